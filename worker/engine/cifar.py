"""Reading CIFAR-10's official "python version" batches into uint8 tensors in one go."""

import pickle
from pathlib import Path

import numpy as np
import torch

from server.core.experiment import IMAGE_SHAPE, IN_FEATURES
from worker.engine.dataset import Dataset, Split
from worker.engine.fetch import TEST_FILE, TRAIN_FILES, ensure_cifar10

# What the official batches (and NumPy re-pickles of them) reference. Anything else in a pickle
# could run code, and the files may come from a download.
_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        # The official files were written by NumPy 1 (numpy.core); NumPy 2 calls it numpy._core.
        if module.startswith("numpy.core."):
            module = "numpy._core." + module.removeprefix("numpy.core.")
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def load_cifar10(data_dir: Path, *, allow_download: bool) -> Dataset:
    folder = ensure_cifar10(data_dir, allow_download=allow_download)
    return read_cifar10(folder)


def read_cifar10(folder: Path) -> Dataset:
    return Dataset(
        train=_read_split([folder / name for name in TRAIN_FILES]),
        test=_read_split([folder / TEST_FILE]),
    )


def _read_split(paths: list[Path]) -> Split:
    images, labels = zip(*(_read_batch(path) for path in paths), strict=True)
    data = np.concatenate(images)
    return Split(
        images=torch.from_numpy(data).view(-1, *IMAGE_SHAPE),
        labels=torch.from_numpy(np.concatenate(labels)),
    )


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: ``b'data'`` N x IN_FEATURES uint8 (R, G, B planes) and ``b'labels'``."""
    try:
        with path.open("rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a CIFAR-10 batch file: {exc}") from exc
    shaped = data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == IN_FEATURES
    if not shaped or labels.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: data {data.dtype} {data.shape}, labels {labels.shape}: not CIFAR-10's shape"
        )
    if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
        raise ValueError(f"{path}: labels outside 0..9")
    return data, labels
