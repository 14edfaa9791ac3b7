"""Settings from environment variables prefixed ``DECAYLAB_``."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DECAYLAB_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./data")
    # Default: an SQLite file under data_dir (see database_url_resolved).
    database_url: str | None = None
    # Checkpoints and snapshots. Must be shared by all workers and the API when they run on
    # several machines; defaults to data_dir/artifacts.
    artifact_dir: Path | None = None
    device: str = "auto"
    allow_download: bool = True
    lease_seconds: float = Field(default=30.0, gt=0)
    # How often an idle worker looks for queued runs (and a busy one for cancellation).
    poll_seconds: float = Field(default=1.0, gt=0)
    # A run claimed this many times without finishing (its workers kept dying, e.g. out of
    # memory) is failed instead of being handed to the next worker forever.
    max_attempts: int = Field(default=10, ge=1)
    # Bearer token every endpoint but /health requires when set (server/middleware.py).
    api_token: str | None = None
    # Larger request bodies are refused with 413 while they stream in.
    max_body_bytes: int = Field(default=64 * 1024, ge=0)
    # Specs beyond these are refused with 422 before they are stored (server/limits.py). The
    # defaults admit the seed's model on the full CIFAR-10, snapshots of every epoch included.
    max_parameters: int = Field(default=100_000_000, ge=1)
    max_memory_bytes: int = Field(default=8 * 2**30, ge=1)
    max_run_disk_bytes: int = Field(default=4 * 2**30, ge=1)

    @field_validator("api_token")
    @classmethod
    def _unset_when_empty(cls, value: str | None) -> str | None:
        # Compose passes an unset variable through as empty: that means no token, not "".
        return (value or "").strip() or None

    @property
    def database_url_resolved(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir.resolve() / 'decaylab.db'}"

    @property
    def artifact_root(self) -> Path:
        return (self.artifact_dir or self.data_dir / "artifacts").resolve()

    def run_dir(self, run_id: int) -> Path:
        """Where a run's checkpoints and snapshots live; the API deletes it with the run."""
        return self.artifact_root / "runs" / str(run_id)

    def snapshot_path(self, run_id: int, epoch: int) -> Path:
        return snapshot_file(self.run_dir(run_id), epoch)


def snapshot_file(run_dir: Path, epoch: int) -> Path:
    """A run's weights after ``epoch`` (0 = initial), written by the worker, served by the API."""
    return run_dir / "snapshots" / f"epoch_{epoch:04d}.npz"


@lru_cache
def get_settings() -> Settings:
    return Settings()
