"""Which torch device a run trains on."""

import torch


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
