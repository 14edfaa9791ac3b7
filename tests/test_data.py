"""Datasets: the official CIFAR-10 file format, its download, and the synthetic stand-in."""

import hashlib
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.engine import fetch
from worker.engine.cifar import read_cifar10
from worker.engine.data import load_dataset
from worker.engine.fetch import FOLDER, TEST_FILE, TRAIN_FILES, DataUnavailable
from worker.engine.synthetic import synthetic


def official_batch(rng: np.random.Generator, n: int, protocol: int = 2) -> tuple[bytes, dict]:
    """A batch file as the official archive has them (a pickled dict with bytes keys)."""
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": rng.integers(0, 10, n).tolist(),
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=protocol), batch


def write_official_files(folder: Path, sizes=(3, 2, 4, 1, 2), test_size=5) -> dict[str, dict]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    batches = {}
    for i, (name, n) in enumerate(zip((*TRAIN_FILES, TEST_FILE), (*sizes, test_size), strict=True)):
        raw, batches[name] = official_batch(rng, n, protocol=2 if i % 2 else 5)
        (folder / name).write_bytes(raw)
    return batches


def test_reads_official_format_in_order(tmp_path):
    batches = write_official_files(tmp_path / FOLDER)
    data = read_cifar10(tmp_path / FOLDER)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.images.shape == (12, 3, 32, 32) and data.test.images.shape == (5, 3, 32, 32)
    rows = np.concatenate([batches[name][b"data"] for name in TRAIN_FILES])
    labels = sum((batches[name][b"labels"] for name in TRAIN_FILES), [])
    assert data.train.labels.tolist() == labels
    # A row is the R, G, B planes, each 32 rows of 32 pixels.
    assert np.array_equal(data.train.images[4].numpy(), rows[4].reshape(3, 32, 32))
    assert np.array_equal(data.train.images[4, 1, 2, 5].numpy(), rows[4][1024 + 2 * 32 + 5])
    assert np.array_equal(data.test.images.reshape(5, -1).numpy(), batches[TEST_FILE][b"data"])


def test_sizes_take_the_first_samples(tmp_path):
    write_official_files(tmp_path / FOLDER)
    full = read_cifar10(tmp_path / FOLDER)
    cut = load_dataset(
        "cifar10", data_dir=tmp_path, allow_download=False, train_size=7, test_size=2
    )
    assert torch.equal(cut.train.images, full.train.images[:7])
    assert torch.equal(cut.test.labels, full.test.labels[:2])
    with pytest.raises(ValueError, match="train_size 13 exceeds the 12"):
        load_dataset("cifar10", data_dir=tmp_path, allow_download=False, train_size=13)


def test_refuses_pickles_that_are_not_batches(tmp_path):
    write_official_files(tmp_path / FOLDER)
    (tmp_path / FOLDER / TEST_FILE).write_bytes(pickle.dumps({b"data": os.getcwd, b"labels": []}))
    with pytest.raises(ValueError, match="not a CIFAR-10 batch file.*getcwd"):
        read_cifar10(tmp_path / FOLDER)
    (tmp_path / FOLDER / TEST_FILE).write_bytes(
        pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    )
    with pytest.raises(ValueError, match="not CIFAR-10's shape"):
        read_cifar10(tmp_path / FOLDER)


def make_archive(path: Path, source: Path) -> str:
    """A tar.gz laid out like the official one; returns its MD5."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source / FOLDER, arcname=FOLDER)
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_download(tmp_path, monkeypatch):
    """The download URL pointed at a local fake archive (offline); returns (archive, data_dir)."""
    write_official_files(tmp_path / "src" / FOLDER)
    archive = tmp_path / "cifar-10-python.tar.gz"
    md5 = make_archive(archive, tmp_path / "src")
    monkeypatch.setattr(fetch, "URL", archive.as_uri())
    monkeypatch.setattr(fetch, "MD5", md5)
    return archive, tmp_path / "data"


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


def test_downloads_checks_and_extracts(fake_download):
    _, data_dir = fake_download
    data = load_dataset("cifar10", data_dir=data_dir, allow_download=True)
    assert len(data.train) == 12 and len(data.test) == 5
    assert leftovers(data_dir) == [FOLDER]  # no archive or temp folder left behind
    assert torch.equal(read_cifar10(data_dir / FOLDER).train.images, data.train.images)


def test_checksum_mismatch_names_the_folder(fake_download, monkeypatch):
    _, data_dir = fake_download
    monkeypatch.setattr(fetch, "MD5", "c58f30108f718f92721af3b95e74349a")
    with pytest.raises(DataUnavailable, match="MD5") as exc:
        load_dataset("cifar10", data_dir=data_dir, allow_download=True)
    assert str(data_dir / FOLDER) in str(exc.value)
    assert leftovers(data_dir) == []


def test_offline_or_disallowed_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "URL", (tmp_path / "nowhere.tar.gz").as_uri())
    with pytest.raises(DataUnavailable, match="downloading .* failed") as exc:
        load_dataset("cifar10", data_dir=tmp_path / "data", allow_download=True)
    assert str(tmp_path / "data" / FOLDER) in str(exc.value)
    with pytest.raises(
        DataUnavailable, match=r"downloads are off \(DECAYLAB_ALLOW_DOWNLOAD=false\)"
    ) as exc:
        load_dataset("cifar10", data_dir=tmp_path / "data", allow_download=False)
    assert str(tmp_path / "data" / FOLDER) in str(exc.value)
    assert leftovers(tmp_path / "data") == []


def test_extraction_is_atomic(fake_download, monkeypatch):
    archive, data_dir = fake_download
    # Cut the archive short: the first members extract, then the stream ends.
    truncated = archive.read_bytes()[: archive.stat().st_size * 2 // 3]
    archive.write_bytes(truncated)
    monkeypatch.setattr(fetch, "MD5", hashlib.md5(truncated).hexdigest())
    with pytest.raises(DataUnavailable, match="could not be extracted"):
        load_dataset("cifar10", data_dir=data_dir, allow_download=True)
    assert leftovers(data_dir) == []  # never a half-extracted folder


def test_incomplete_folder_is_not_replaced(fake_download):
    _, data_dir = fake_download
    (data_dir / FOLDER).mkdir(parents=True)
    (data_dir / FOLDER / TEST_FILE).write_bytes(b"mine")
    with pytest.raises(DataUnavailable, match="data_batch_1.*will not replace"):
        load_dataset("cifar10", data_dir=data_dir, allow_download=True)
    assert (data_dir / FOLDER / TEST_FILE).read_bytes() == b"mine"


def test_synthetic_is_deterministic_and_prefix_stable():
    small, large = synthetic(1500, 300), synthetic(2600, 700)
    assert small.train.images.shape == (1500, 3, 32, 32) and small.test.labels.shape == (300,)
    assert small.train.images.dtype == torch.uint8 and small.train.labels.dtype == torch.int64
    assert torch.equal(small.train.images, large.train.images[:1500])
    assert torch.equal(small.test.labels, large.test.labels[:300])
    assert torch.equal(synthetic(1500, 300).train.images, small.train.images)
    assert not torch.equal(synthetic(1500, 300, seed=1).train.images, small.train.images)
    assert not torch.equal(small.test.images, small.train.images[:300])
    assert set(large.train.labels.tolist()) == set(range(10))
    # Not degenerate: pixels spread over the byte range.
    pixels = large.train.images.float()
    assert 100 < pixels.mean() < 155 and pixels.std() > 30


def test_synthetic_classes_differ_on_average():
    data = synthetic(3000, 10)
    means = torch.stack(
        [data.train.images[data.train.labels == c].float().mean(0) for c in range(10)]
    )
    distances = torch.cdist(means.flatten(1), means.flatten(1))
    # Noise alone would leave class means about 230 apart (3072 pixels, ~300 samples each).
    assert distances[~torch.eye(10, dtype=torch.bool)].min() > 500


def test_synthetic_dataset_sizes_via_load_dataset(tmp_path):
    data = load_dataset(
        "synthetic", data_dir=tmp_path, allow_download=False, train_size=40, test_size=30
    )
    assert (len(data.train), len(data.test)) == (40, 30)
    assert not (tmp_path / FOLDER).exists()
