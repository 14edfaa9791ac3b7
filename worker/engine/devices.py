"""Which torch device a run trains on, and the numerics every run trains with."""

import os
from typing import Any

# cuBLAS is deterministic only with a fixed workspace; read when CUDA first initialises, so set
# before any run touches the GPU (torch.use_deterministic_algorithms raises without it).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch  # noqa: E402 (after the variable cuBLAS reads)


class DeviceUnavailable(RuntimeError):
    pass


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU; otherwise any torch device string."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceUnavailable(f"unknown device {name!r}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {name!r} requested but CUDA is not available")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {name!r}: only {torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", index)
    if device.type != "cpu":
        raise DeviceUnavailable(f"device {name!r} is not supported (use auto, cpu or cuda[:N])")
    return device


def describe(device: torch.device) -> str:
    """What the run record shows, e.g. ``cpu`` or ``cuda:0 (NVIDIA H200)``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    """A spec's ``dtype`` or ``autocast`` name as the torch dtype."""
    return DTYPES[name]


def exact_numerics(
    device: torch.device, dtype: str = "float32", autocast: str | None = None
) -> dict[str, Any]:
    """Make fp32 stay fp32 and every kernel deterministic, on every device, and return what is in
    force (stored on the run as ``numerics``).

    The counts of constant weights compare values bit for bit: TF32 matmuls (the default on
    recent GPUs for some entry points) or nondeterministic kernels would change which weights
    count as constant from one run of a spec to the next. ``dtype`` and ``autocast`` are the
    run's precision (its spec's), recorded with the rest."""
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
    return numerics_in_force(device, dtype, autocast)


def numerics_in_force(
    device: torch.device, dtype: str = "float32", autocast: str | None = None
) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "autocast": autocast,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": describe(device),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
