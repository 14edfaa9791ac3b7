"""A run's files: where its checkpoints and weight snapshots live, how they are named, how many
checkpoints are kept, and how the whole of it is removed.

The worker writes them (worker/engine/checkpoint.py), the API serves snapshots and removes the
directory with the run, and the resource limits count them; all of them go through ``RunFiles``.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

_PATTERN = "epoch_{epoch:04d}"


@dataclass(frozen=True)
class RunFiles:
    """The directory of one run: ``checkpoints/epoch_NNNN.pt`` and ``snapshots/epoch_NNNN.npz``."""

    root: Path

    # Checkpoints kept: the worker resumes from k or k-1, whichever its database recorded.
    KEEP = 2
    # On disk at once at most: the kept ones and the next, written before the oldest goes.
    CHECKPOINTS_ON_DISK = KEEP + 1

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    def checkpoint(self, epoch: int) -> Path:
        """The training state after ``epoch``."""
        return self.checkpoints / f"{_PATTERN.format(epoch=epoch)}.pt"

    def snapshot(self, epoch: int) -> Path:
        """The weights after ``epoch`` (0 = initial), kept with ``keep_snapshots``."""
        return self.snapshots / f"{_PATTERN.format(epoch=epoch)}.npz"

    def stale_checkpoints(self, epoch: int) -> list[Path]:
        """Checkpoints no resume can need once ``epoch``'s is written: all older than KEEP."""
        stale = []
        for path in self.checkpoints.glob("epoch_*.pt"):
            number = path.stem.removeprefix("epoch_")
            if number.isdigit() and int(number) <= epoch - self.KEEP:
                stale.append(path)
        return stale

    def clear_checkpoints(self) -> None:
        """Forget an earlier attempt's checkpoints (a run restarting from epoch 0)."""
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def remove(self) -> None:
        """Every file of the run (the API deletes them with the run)."""
        shutil.rmtree(self.root, ignore_errors=True)
