"""The official CIFAR-10 "python version" files: downloaded, checked and extracted atomically."""

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"


class DataUnavailable(RuntimeError):
    """The dataset's files are missing and could not be downloaded."""


def missing_files(folder: Path) -> list[str]:
    return [name for name in (*TRAIN_FILES, TEST_FILE) if not (folder / name).is_file()]


def ensure_cifar10(data_dir: Path, *, allow_download: bool) -> Path:
    """``data_dir/cifar-10-batches-py`` with all six batch files, downloading them if allowed."""
    folder = data_dir / FOLDER
    missing = missing_files(folder)
    if not missing:
        return folder
    where = f"CIFAR-10 files are expected in {folder} (missing: {', '.join(missing)})"
    if not allow_download:
        raise DataUnavailable(f"{where}; downloads are off (DECAYLAB_ALLOW_DOWNLOAD=false)")
    if folder.exists():
        raise DataUnavailable(f"{where}; the folder exists, so a download will not replace it")
    data_dir.mkdir(parents=True, exist_ok=True)
    # Everything happens in a private folder next to the target, so the target appears complete
    # (one rename) or not at all, and an interrupted attempt leaves nothing behind.
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".cifar-10-download-") as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        try:
            _download(URL, archive)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise DataUnavailable(f"{where}; downloading {URL} failed: {exc}") from exc
        digest = _md5(archive)
        if digest != MD5:
            raise DataUnavailable(f"{where}; {URL} gave MD5 {digest}, expected {MD5}")
        staged = Path(tmp) / "extracted"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(staged, filter="data")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataUnavailable(f"{where}; the archive could not be extracted: {exc}") from exc
        if lacking := missing_files(staged / FOLDER):
            raise DataUnavailable(f"{where}; the archive lacks {', '.join(lacking)}")
        try:
            os.replace(staged / FOLDER, folder)
        except OSError as exc:
            # Another worker may have finished the same download first: theirs is as good.
            if missing_files(folder):
                raise DataUnavailable(f"{where}; could not move the files there: {exc}") from exc
    return folder


def _download(url: str, dest: Path) -> None:
    try:
        from torchvision.datasets.utils import download_url
    except (ImportError, RuntimeError):  # absent, or built for another torch
        with urllib.request.urlopen(url, timeout=60) as response, dest.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    else:
        download_url(url, str(dest.parent), dest.name)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
