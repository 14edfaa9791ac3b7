"""Device selection: auto, explicit devices, and clear refusals."""

import pytest
import torch

from worker.engine.devices import DeviceUnavailable, describe, resolve_device


def test_auto_prefers_cuda():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu") and describe(torch.device("cpu")) == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["gpu", "meta"])
def test_unknown_or_unsupported_devices_are_refused(name):
    with pytest.raises(DeviceUnavailable, match=repr(name)):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_description_names_the_gpu():
    assert describe(resolve_device("cuda")).startswith("cuda:0 (")
