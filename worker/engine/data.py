"""The dataset a run asks for, cut to its requested sizes."""

from pathlib import Path
from typing import Literal

from server.core.experiment import dataset_sizes
from worker.engine.cifar import load_cifar10
from worker.engine.dataset import Dataset
from worker.engine.synthetic import synthetic


def load_dataset(
    name: Literal["cifar10", "synthetic"],
    *,
    data_dir: Path,
    allow_download: bool,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """The named dataset, cut to its first ``train_size`` / ``test_size`` samples."""
    if name == "synthetic":
        # Generated at the requested size: sample i is the same whatever the size.
        return synthetic(*dataset_sizes(name, train_size, test_size))
    data = load_cifar10(data_dir, allow_download=allow_download)
    return Dataset(
        data.train.first(train_size, "train_size"), data.test.first(test_size, "test_size")
    )
