"""Exact on every device: the engine pins fp32 matmuls to full precision and deterministic
algorithms, and each run records what was in force (RunOut.numerics)."""

import pytest
import torch

from server.core.runfiles import RunFiles
from server.core.schemas import RunSpec
from worker.engine.train import Training
from worker.loop import Worker

pytestmark = pytest.mark.backends("sqlite", "postgresql")

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_run_records_the_numerics_it_trained_with(client, settings, db, tiny_spec):
    run_id = client.post("/runs", json=tiny_spec(epochs=1)).json()["id"]
    assert client.get(f"/runs/{run_id}").json()["numerics"] is None  # not started yet
    Worker(settings, db).run(once=True)
    run = client.get(f"/runs/{run_id}").json()
    assert run["status"] == "succeeded"
    numerics = run["numerics"]
    assert numerics["torch"] == torch.__version__
    assert numerics["device"] == run["device"] == "cpu"
    assert numerics["float32_matmul_precision"] == "highest"
    assert numerics["deterministic_algorithms"] is True
    assert numerics["cuda_matmul_allow_tf32"] is False
    assert numerics["cudnn_allow_tf32"] is False
    # In force in this process too, not only written down.
    assert torch.get_float32_matmul_precision() == "highest"
    assert torch.are_deterministic_algorithms_enabled()


@CUDA
def test_cuda_training_is_exact_and_repeatable(tmp_path, tiny_spec):
    spec = RunSpec(**tiny_spec(epochs=2))
    runs = []
    for name in ("a", "b"):
        training = Training.fresh(spec, RunFiles(tmp_path / name), tmp_path, device="cuda")
        assert training.numerics["float32_matmul_precision"] == "highest"
        assert training.numerics["cuda_matmul_allow_tf32"] is False
        assert training.numerics["deterministic_algorithms"] is True
        assert training.numerics["device"].startswith("cuda")
        runs.append([(e.counts, e.train_loss, e.variances) for e in training.epochs()])
    assert runs[0] == runs[1]
