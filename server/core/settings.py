"""Settings from environment variables prefixed ``DECAYLAB_``."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.core.runfiles import RunFiles, open_bucket


class Settings(BaseSettings):
    # env_ignore_empty: compose passes an unset variable through as empty, which means "unset"
    # (no token, the default database), not "".
    model_config = SettingsConfigDict(env_prefix="DECAYLAB_", extra="ignore", env_ignore_empty=True)

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./data")
    # Default: an SQLite file under data_dir (filled in when the settings are read).
    database_url: str = Field(default=None, validate_default=True)
    # Checkpoints and snapshots. Must be shared by all workers and the API when they run on
    # several machines (unless artifact_url names a bucket); defaults to data_dir/artifacts.
    artifact_dir: Path = Field(default=None, validate_default=True)
    # s3://bucket/prefix: run files in an S3-compatible bucket instead (server/core/runfiles.py);
    # then workers and the API share nothing but the database and the bucket, and artifact_dir
    # only stages files on their way. Credentials and endpoint: the standard AWS_* variables.
    artifact_url: str | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"
    )
    # How long a failed upload or download is retried (with back-off) before the worker hands
    # its run back.
    artifact_retry_seconds: float = Field(default=60.0, gt=0)
    device: str = "auto"
    allow_download: bool = True
    lease_seconds: float = Field(default=30.0, gt=0)
    # How often an idle worker looks for queued runs (and a busy one for cancellation).
    poll_seconds: float = Field(default=1.0, gt=0)
    # A run claimed this many times without finishing (its workers kept dying, e.g. out of
    # memory) is failed instead of being handed to the next worker forever.
    max_attempts: int = Field(default=10, ge=1)
    # Bearer token every endpoint but /health requires when set (server/api/middleware.py).
    api_token: str | None = None
    # Larger request bodies are refused with 413 while they stream in.
    max_body_bytes: int = Field(default=64 * 1024, ge=0)
    # Specs beyond these are refused with 422 before they are stored (server/store/limits.py). The
    # defaults admit the seed's model on the full CIFAR-10, snapshots of every epoch included.
    max_parameters: int = Field(default=100_000_000, ge=1)
    max_memory_bytes: int = Field(default=8 * 2**30, ge=1)
    max_run_disk_bytes: int = Field(default=4 * 2**30, ge=1)
    # POST /sweeps refuses (422) a grid of more runs (server/views/sweeps.py).
    max_sweep_runs: int = Field(default=256, ge=1)
    # Each API process keeps computed view answers up to this many bytes (server/views/
    # registry.py); 0 keeps none.
    view_cache_bytes: int = Field(default=128 * 2**20, ge=0)

    @field_validator("database_url", mode="before")
    @classmethod
    def _sqlite_under_data_dir(cls, value: str | None, info: ValidationInfo) -> str:
        return value or f"sqlite:///{Path(info.data['data_dir']).resolve() / 'decaylab.db'}"

    @field_validator("artifact_dir", mode="before")
    @classmethod
    def _artifacts_under_data_dir(cls, value: str | Path | None, info: ValidationInfo) -> Path:
        return Path(value or Path(info.data["data_dir"]) / "artifacts").resolve()

    def run_files(self, run_id: int) -> RunFiles:
        """The files of run ``run_id`` (the same place for the API and every worker)."""
        root = self.artifact_dir / "runs" / str(run_id)
        if self.artifact_url is None:
            return RunFiles(root)
        bucket = open_bucket(self.artifact_url, self.artifact_retry_seconds)
        return RunFiles(root, bucket, f"runs/{run_id}")

    def check_artifacts(self) -> None:
        """At start-up (API and worker): ArtifactStoreError, naming the setting, when the bucket
        cannot be used."""
        if self.artifact_url is not None:
            open_bucket(self.artifact_url, self.artifact_retry_seconds).check()


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return Settings()
