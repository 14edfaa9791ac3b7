"""Writing and reading a run's files (laid out by server.core.runfiles.RunFiles), atomically."""

import io
import os
import tempfile
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from server.core.runfiles import RunFiles


class CheckpointWriteError(Exception):
    """A run's file could not be written (disk full, no permission): the run cannot go on.

    The worker fails the run with this message rather than retrying: the next attempt would
    meet the same disk."""


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write via a temp file in the same folder and ``os.replace``: all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_run_file(what: str, path: Path, write: Callable[[IO[bytes]], object]) -> None:
    try:
        atomic_write(path, write)
    except (OSError, RuntimeError) as exc:
        # torch.save reports a failed write as a RuntimeError raised while handling the OSError.
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        reason = cause.strerror or cause
        raise CheckpointWriteError(f"cannot write {what} to {path}: {reason}") from exc


def save_checkpoint(files: RunFiles, epoch: int, state: Mapping[str, Any]) -> None:
    """Write epoch's checkpoint whole (to the bucket, when there is one), then drop those no
    resume can need any more. Only then may the epoch be recorded."""
    path = files.checkpoint(epoch)
    _write_run_file(f"the checkpoint of epoch {epoch}", path, lambda f: torch.save(dict(state), f))
    files.publish(path)
    files.drop_stale_checkpoints(epoch)


def load_checkpoint(files: RunFiles, epoch: int) -> dict[str, Any]:
    """The checkpoint's contents on the CPU (downloaded from the bucket, when there is one);
    FileNotFoundError when it is not there."""
    data = io.BytesIO(files.read(files.checkpoint(epoch)))
    return torch.load(data, map_location="cpu", weights_only=True)


def save_snapshot(files: RunFiles, epoch: int, state_dict: Mapping[str, torch.Tensor]) -> None:
    """The weights after ``epoch`` as an ``.npz`` keyed by ``state_dict`` name."""
    arrays = {name: t.detach().cpu().numpy() for name, t in state_dict.items()}
    path = files.snapshot(epoch)
    _write_run_file(f"the weights of epoch {epoch}", path, lambda f: np.savez(f, **arrays))
    files.publish(path)
