"""A run's files: where its checkpoints and weight snapshots live, how they are named, how many
checkpoints are kept, and how the whole of it is removed.

The worker writes them (worker/engine/checkpoint.py), the API serves snapshots and removes them
with the run, and the resource limits count them; all of them go through ``RunFiles``.

They live in a local directory (``DECAYLAB_ARTIFACT_DIR``, the default) or, with
``DECAYLAB_ARTIFACT_URL=s3://bucket/prefix``, in an S3-compatible bucket (``Bucket``). With a
bucket the local directory only stages a file between its atomic local write and its upload (one
PUT: an object is visible whole or not at all); the bucket is the truth, so workers on machines
that share nothing but the database resume each other's runs.
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import obstore
from obstore.exceptions import BaseError
from obstore.store import S3Store

_PATTERN = "epoch_{epoch:04d}"
# Bytes per piece when a file is streamed (API downloads) or copied.
CHUNK = 1 << 20


class ArtifactStoreError(Exception):
    """The bucket cannot be used: missing, unreachable, or it refuses the credentials. The message
    names the setting to fix."""


class BucketUnavailable(Exception):
    """A run's file could not be moved to or from the bucket after the retries: the worker hands
    the run back (the next attempt resumes it from its last stored epoch), never half-written."""


def _reason(exc: BaseException) -> str:
    # obstore's messages end in a long debug dump; its first line says what went wrong.
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class Bucket:
    """An ``s3://bucket/prefix`` through obstore. Credentials, region and endpoint come from the
    standard variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
    AWS_ENDPOINT_URL for MinIO and other S3-compatible servers); plain HTTP only when that
    endpoint says ``http://``."""

    SETTING = "DECAYLAB_ARTIFACT_URL"

    def __init__(self, url: str, retry_seconds: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.store = self._open(max_retries=10, retry_seconds=retry_seconds)

    def _open(self, *, max_retries: int, retry_seconds: float) -> S3Store:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL", "")
        return S3Store.from_url(
            self.url,
            client_options={
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": timedelta(seconds=5),
            },
            # Transient failures (connection errors, 5xx, throttling) are retried with
            # exponential back-off until retry_seconds have passed.
            retry_config={
                "max_retries": max_retries,
                "retry_timeout": timedelta(seconds=retry_seconds),
                "backoff": {
                    "init_backoff": timedelta(milliseconds=100),
                    "max_backoff": timedelta(seconds=10),
                    "base": 2,
                },
            },
        )

    def check(self) -> None:
        """Raise ArtifactStoreError unless the bucket answers a listing with these credentials
        (at start-up: a bad setting should not surface at a run's first epoch)."""
        quick = self._open(max_retries=2, retry_seconds=10)
        try:
            next(iter(obstore.list(quick, chunk_size=1)), None)
        except (BaseError, OSError) as exc:
            raise ArtifactStoreError(
                f"{self.SETTING}={self.url} cannot be used: the bucket is missing, unreachable or"
                f" refuses the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,"
                f" AWS_ENDPOINT_URL): {_reason(exc)}"
            ) from exc

    @contextmanager
    def _transfer(self, what: str, key: str) -> Iterator[None]:
        # A missing object stays FileNotFoundError (obstore raises that); anything else, after
        # obstore's retries, is the bucket's failure.
        try:
            yield
        except FileNotFoundError:
            raise
        except (BaseError, OSError) as exc:
            raise BucketUnavailable(f"cannot {what} {self.url}/{key}: {_reason(exc)}") from exc

    def keys(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under ``prefix``/."""
        with self._transfer("list", prefix):
            batches = list(obstore.list(self.store, f"{prefix}/"))
        return [(meta["path"], meta["size"]) for batch in batches for meta in batch]

    def upload(self, key: str, path: Path) -> None:
        # One PUT, not a multipart upload: nothing (not even invisible parts) is left behind
        # by a worker killed mid-upload, and a single PUT takes objects up to 5 GB.
        with self._transfer("upload", key):
            obstore.put(self.store, key, path, use_multipart=False)

    def read(self, key: str) -> bytes:
        with self._transfer("download", key):
            return bytes(obstore.get(self.store, key).bytes())

    def stream(self, key: str) -> tuple[int, Iterator[bytes]]:
        """The object's size and its bytes piece by piece; FileNotFoundError when there is none."""
        with self._transfer("download", key):
            result = obstore.get(self.store, key)
        return result.meta["size"], (bytes(chunk) for chunk in result.stream(CHUNK))

    def delete(self, keys: list[str]) -> None:
        if keys:
            with self._transfer("delete", keys[0]):
                obstore.delete(self.store, keys)


@lru_cache
def open_bucket(url: str, retry_seconds: float) -> Bucket:
    """One client (and connection pool) per process and setting."""
    return Bucket(url, retry_seconds)


def _epoch_of(name: str) -> int | None:
    number = Path(name).stem.removeprefix("epoch_")
    return int(number) if number.isdigit() else None


@dataclass(frozen=True)
class RunFiles:
    """One run's ``checkpoints/epoch_NNNN.pt`` and ``snapshots/epoch_NNNN.npz``: under ``root``
    on disk, or under ``key`` in ``bucket`` (with ``root`` as the local staging directory)."""

    root: Path
    bucket: Bucket | None = None
    key: str = ""  # the run's prefix in the bucket, e.g. "runs/7"

    # Checkpoints kept: the worker resumes from k or k-1, whichever its database recorded.
    KEEP = 2
    # Stored at once at most (on disk or in the bucket): the kept ones and the next, written
    # before the oldest goes.
    CHECKPOINTS_ON_DISK = KEEP + 1

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def snapshots(self) -> Path:
        return self.root / "snapshots"

    @property
    def location(self) -> str:
        """Where the run's files are, for messages and caches."""
        return f"{self.bucket.url}/{self.key}" if self.bucket else str(self.root)

    def checkpoint(self, epoch: int) -> Path:
        """The training state after ``epoch`` (its local path; read it with ``read``)."""
        return self.checkpoints / f"{_PATTERN.format(epoch=epoch)}.pt"

    def snapshot(self, epoch: int) -> Path:
        """The weights after ``epoch`` (0 = initial), kept with ``keep_snapshots``."""
        return self.snapshots / f"{_PATTERN.format(epoch=epoch)}.npz"

    def where(self, path: Path) -> str:
        """``path`` as the user finds it: the object's URL with a bucket."""
        return f"{self.bucket.url}/{self._key(path)}" if self.bucket else str(path)

    def _key(self, path: Path) -> str:
        return f"{self.key}/{path.relative_to(self.root).as_posix()}"

    def publish(self, path: Path) -> None:
        """After ``path`` was written whole: with a bucket, upload it (BucketUnavailable after the
        retries) and drop the staged copy."""
        if self.bucket is None:
            return
        try:
            self.bucket.upload(self._key(path), path)
        finally:
            path.unlink(missing_ok=True)

    def read(self, path: Path) -> bytes:
        """The file's bytes (FileNotFoundError when there is none)."""
        return self.bucket.read(self._key(path)) if self.bucket else path.read_bytes()

    def stream(self, path: Path) -> tuple[int, Iterator[bytes]]:
        """The file's size and its bytes piece by piece, never all in memory."""
        if self.bucket is not None:
            return self.bucket.stream(self._key(path))
        size = path.stat().st_size  # FileNotFoundError first, before the response starts

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        return size, chunks()

    def _checkpoint_epochs(self) -> list[int]:
        if self.bucket is not None:
            names = [key for key, _ in self.bucket.keys(f"{self.key}/checkpoints")]
        else:
            names = [p.name for p in self.checkpoints.glob("epoch_*.pt")]
        return sorted(e for e in map(_epoch_of, names) if e is not None)

    def drop_stale_checkpoints(self, epoch: int) -> None:
        """Remove the checkpoints no resume can need once ``epoch``'s is stored: all older than
        KEEP."""
        stale = [self.checkpoint(e) for e in self._checkpoint_epochs() if e <= epoch - self.KEEP]
        if self.bucket is not None:
            self.bucket.delete([self._key(path) for path in stale])
        for path in stale:
            path.unlink(missing_ok=True)

    def clear_checkpoints(self) -> None:
        """Forget an earlier attempt's checkpoints (a run restarting from epoch 0)."""
        if self.bucket is not None:
            self.bucket.delete([key for key, _ in self.bucket.keys(f"{self.key}/checkpoints")])
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    def usage(self) -> int:
        """Bytes the run's files take now (the resource limits bound this)."""
        if self.bucket is not None:
            return sum(size for _, size in self.bucket.keys(self.key))
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def remove(self) -> None:
        """Every file of the run (the API deletes them with the run)."""
        if self.bucket is not None:
            self.bucket.delete([key for key, _ in self.bucket.keys(self.key)])
        shutil.rmtree(self.root, ignore_errors=True)
