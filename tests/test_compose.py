"""The compose files, validated and resolved by the docker-compose client (no engine needed)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose")
GPU = ["docker-compose.yml", "docker-compose.override.yml"]
CPU = ["docker-compose.yml", "docker-compose.cpu.yml"]
POSTGRES = ["docker-compose.postgres.yml"]
MINIO = ["docker-compose.minio.yml"]

pytestmark = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose client not installed (apt-get install docker-compose)"
)


def resolved(files: list[str] | None, **env: str) -> dict:
    """`docker-compose config` of the files (None: the default pair) with a clean environment."""
    args = [COMPOSE]
    for name in files or []:
        args += ["-f", name]
    result = subprocess.run(
        [*args, "config"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def mounts(service: dict) -> list[str]:
    """source:target of each volume, whether the client prints short or long syntax."""
    return [
        ":".join(v.split(":")[:2]) if isinstance(v, str) else f"{v['source']}:{v['target']}"
        for v in service["volumes"]
    ]


def gpu_requests(service: dict) -> list[dict]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


@pytest.mark.parametrize("files", [GPU, CPU, GPU + POSTGRES, CPU + POSTGRES], ids=str)
def test_every_combination_is_valid_and_shares_one_volume(files):
    config = resolved(files)
    api, worker = config["services"]["api"], config["services"]["worker"]
    assert [int(p["target"]) for p in api["ports"]] == [8000]
    assert api["environment"]["DECAYLAB_HOST"] == "0.0.0.0"
    for service in (api, worker):
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"][0] == "CMD"
        assert "decaylab-data:/data" in mounts(service)
        assert service["environment"]["DECAYLAB_DATA_DIR"] == "/data"
    assert worker["healthcheck"]["test"][1:] == ["python", "-m", "worker", "--check"]
    assert "ports" not in worker  # so that --scale worker=N cannot clash


def test_plain_up_reserves_one_nvidia_gpu_per_worker():
    worker = resolved(None)["services"]["worker"]
    assert gpu_requests(worker) == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["environment"]["DECAYLAB_DEVICE"] == "cuda"


def test_cpu_variant_reserves_no_gpu():
    worker = resolved(CPU)["services"]["worker"]
    assert gpu_requests(worker) == []
    assert worker["environment"]["DECAYLAB_DEVICE"] == "cpu"


def test_postgres_variant_points_both_services_at_postgres():
    config = resolved(CPU + POSTGRES, POSTGRES_PASSWORD="s3cret")
    url = "postgresql+psycopg://decaylab:s3cret@postgres:5432/decaylab"
    for name in ("api", "worker"):
        assert config["services"][name]["environment"]["DECAYLAB_DATABASE_URL"] == url
    assert "postgres" in config["services"]["api"]["depends_on"]
    assert config["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"


def test_postgres_variant_lets_workers_on_other_machines_name_the_database_host():
    config = resolved(GPU + POSTGRES, DECAYLAB_POSTGRES_HOST="db.lab")
    url = "postgresql+psycopg://decaylab:decaylab@db.lab:5432/decaylab"
    assert config["services"]["worker"]["environment"]["DECAYLAB_DATABASE_URL"] == url


def test_token_is_passed_through_only_when_set():
    assert resolved(CPU)["services"]["api"]["environment"].get("DECAYLAB_API_TOKEN") is None
    config = resolved(CPU, DECAYLAB_API_TOKEN="t0ken")
    for name in ("api", "worker"):
        assert config["services"][name]["environment"]["DECAYLAB_API_TOKEN"] == "t0ken"


@pytest.mark.parametrize("files", [GPU + POSTGRES + MINIO, CPU + POSTGRES + MINIO], ids=str)
def test_minio_variant_shares_nothing_but_postgres_and_the_bucket(files):
    config = resolved(files)
    services = config["services"]
    api, worker = services["api"], services["worker"]
    # Each worker container gets an anonymous volume of its own at /data: --scale worker=4
    # shares no volume between them.
    assert worker["volumes"] in (["/data"], [{"type": "volume", "target": "/data"}])
    for service in (api, worker):
        env = service["environment"]
        assert env["DECAYLAB_ARTIFACT_URL"] == "s3://decaylab/lab"
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["DECAYLAB_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert service["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    # MinIO's root user is the key the services sign with, and the init job makes the bucket.
    minio = services["minio"]["environment"]
    assert (minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"]) == (
        api["environment"]["AWS_ACCESS_KEY_ID"],
        api["environment"]["AWS_SECRET_ACCESS_KEY"],
    )
    assert "mc mb --ignore-existing" in services["minio-init"]["entrypoint"][-1]


def test_minio_variant_takes_another_bucket_and_credentials_from_the_environment():
    config = resolved(
        CPU + POSTGRES + MINIO,
        DECAYLAB_ARTIFACT_URL="s3://lab-b/runs",
        AWS_ACCESS_KEY_ID="key",
        AWS_SECRET_ACCESS_KEY="secret-key",
    )
    for name in ("api", "worker", "minio-init"):
        env = config["services"][name]["environment"]
        assert env["DECAYLAB_ARTIFACT_URL"] == "s3://lab-b/runs"
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("key", "secret-key")
