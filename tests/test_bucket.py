"""Run files in an S3-compatible bucket (DECAYLAB_ARTIFACT_URL), against moto's S3 server process
over HTTP (the ``s3_server`` and ``bucket`` fixtures in conftest.py).

Machines that share nothing but the database and the bucket: each "machine" below has a data
directory of its own, so a run's files can only have come from the bucket.
"""

import io
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import S3Bucket, run_of, stored_results, submit
from fastapi.testclient import TestClient
from test_worker_loop import interrupt_after_two_epochs

from server.api.app import create_app
from server.core.runfiles import ArtifactStoreError
from server.core.schemas import RunSpec
from server.core.settings import Settings
from server.processes import Processes, free_port
from server.store import limits
from server.store.db import Database
from worker.loop import Worker

EPOCHS = 6
# Generous: the process tests share a couple of cores with whatever else runs.
WAIT = 600


def machine(settings: Settings, root: Path, bucket: S3Bucket) -> Settings:
    """``settings`` on another machine: its own empty data directory, the shared bucket."""
    return settings.model_copy(
        update={
            "data_dir": root,
            "artifact_dir": root / "artifacts",
            "artifact_url": bucket.url,
            "artifact_retry_seconds": 5.0,
        }
    )


def local_files(settings: Settings) -> list[Path]:
    return [p for p in settings.artifact_dir.rglob("*") if p.is_file()]


def expected_keys(run_id: int, epochs: int, snapshots: bool) -> list[str]:
    """A finished run's objects: the kept checkpoints, and its snapshots if it keeps them."""
    kept = [f"lab/runs/{run_id}/checkpoints/epoch_{e:04d}.pt" for e in (epochs - 1, epochs)]
    weights = [f"lab/runs/{run_id}/snapshots/epoch_{e:04d}.npz" for e in range(epochs + 1)]
    return sorted(kept + (weights if snapshots else []))


@pytest.mark.backends("sqlite", "postgresql")
def test_a_run_resumes_on_another_machine_from_the_bucket_as_if_undisturbed(
    db, settings, tiny_spec, bucket, tmp_path
):
    spec = tiny_spec(epochs=EPOCHS, keep_snapshots=True)
    first, second = (
        machine(settings, tmp_path / "a", bucket),
        machine(settings, tmp_path / "b", bucket),
    )
    run_id = interrupt_after_two_epochs(db, first, spec)
    assert 2 <= run_of(db, run_id).epochs_done < EPOCHS
    assert local_files(first) == []  # staged files go once uploaded
    twin = submit(db, spec)
    Worker(second, db, name="host:2").run(exit_when_idle=True)

    run = run_of(db, run_id)
    # Resumed from the bucket's checkpoint, not restarted (a restart leaves a note).
    assert (run.status, run.attempts, run.worker, run.note) == ("succeeded", 2, "host:2", None)
    assert stored_results(db, run_id) == stored_results(db, twin)
    assert bucket.keys(f"lab/runs/{run_id}/") == expected_keys(run_id, EPOCHS, snapshots=True)
    assert local_files(second) == []
    for epoch in range(EPOCHS + 1):
        a, b = (
            np.load(io.BytesIO(second.run_files(r).read(second.run_files(r).snapshot(epoch))))
            for r in (run_id, twin)
        )
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    # The resource limit's estimate bounds what the run keeps in the bucket.
    used = second.run_files(run_id).usage()
    assert 0 < used <= limits.estimate(RunSpec.model_validate(spec)).disk_bytes


def test_the_api_serves_snapshots_from_the_bucket_and_delete_leaves_no_object(
    db, settings, tiny_spec, bucket, tmp_path
):
    worker_machine = machine(settings, tmp_path / "worker", bucket)
    kept = submit(db, tiny_spec(epochs=3, keep_snapshots=True))
    plain = submit(db, tiny_spec(epochs=2))
    Worker(worker_machine, db).run(exit_when_idle=True)
    assert bucket.keys(f"lab/runs/{kept}/") == expected_keys(kept, 3, snapshots=True)
    assert bucket.keys(f"lab/runs/{plain}/") == expected_keys(plain, 2, snapshots=False)

    api_machine = machine(settings, tmp_path / "api", bucket)
    with TestClient(create_app(api_machine)) as client:
        for epoch in range(4):
            response = client.get(f"/runs/{kept}/snapshots/{epoch}")
            assert response.status_code == 200
            key = f"lab/runs/{kept}/snapshots/epoch_{epoch:04d}.npz"
            stored = bucket.server.client().get_object(Bucket=bucket.name, Key=key)["Body"].read()
            assert response.content == stored
            assert response.headers["content-length"] == str(len(stored))
            assert f"run{kept}_epoch{epoch:04d}.npz" in response.headers["content-disposition"]
        assert client.get(f"/runs/{kept}/snapshots/4").status_code == 404
        # A tolerance the run did not measure: computed from its snapshots in the bucket.
        after_the_fact = client.get(f"/runs/{kept}/constancy", params={"tol": 0.05})
        assert after_the_fact.status_code == 200, after_the_fact.text
        assert after_the_fact.json()["epochs"] == [1, 2, 3]

        assert client.delete(f"/runs/{kept}").status_code == 204
        assert bucket.keys(f"lab/runs/{kept}/") == []
        assert bucket.keys() == expected_keys(plain, 2, snapshots=False)
        sweep = client.post(
            "/sweeps",
            json={"name": "s", "base": tiny_spec(epochs=1), "grid": {"seed": [0, 1]}},
        ).json()
        Worker(worker_machine, db).run(exit_when_idle=True)
        members = [r["id"] for r in sweep["runs"]]
        assert all(bucket.keys(f"lab/runs/{r}/") for r in members)
        assert client.delete(f"/sweeps/{sweep['id']}").status_code == 204
        assert all(bucket.keys(f"lab/runs/{r}/") == [] for r in members)
    assert local_files(api_machine) == []


def test_a_bucket_that_cannot_be_used_stops_the_start_naming_the_setting(
    settings, bucket, s3_server, monkeypatch
):
    good = settings.model_copy(update={"artifact_url": bucket.url})
    good.check_artifacts()
    missing = settings.model_copy(update={"artifact_url": "s3://no-such-bucket/lab"})
    with pytest.raises(ArtifactStoreError, match="DECAYLAB_ARTIFACT_URL=s3://no-such-bucket/lab"):
        missing.check_artifacts()
    with pytest.raises(ArtifactStoreError, match="NoSuchBucket|404"):
        create_app(missing)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ArtifactStoreError, match="DECAYLAB_ARTIFACT_URL.*403"):
        good.check_artifacts()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.env["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    with pytest.raises(ArtifactStoreError, match="DECAYLAB_ARTIFACT_URL.*error sending request"):
        good.check_artifacts()


def test_a_refused_upload_hands_the_run_back_with_nothing_recorded(
    db, settings, tiny_spec, bucket, s3_server, monkeypatch, tmp_path
):
    # Credentials that may list and read but not write: every upload is refused.
    for name, value in s3_server.read_only.items():
        monkeypatch.setenv(name, value)
    run_id = submit(db, tiny_spec(epochs=2))
    Worker(machine(settings, tmp_path / "ro", bucket), db).run(once=True)
    run = run_of(db, run_id)
    assert (run.status, run.epochs_done, run.attempts, run.error) == ("queued", 0, 1, None)
    assert bucket.keys() == []
    assert local_files(machine(settings, tmp_path / "ro", bucket)) == []


# --- real processes --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.backends("sqlite", "postgresql")
def test_a_killed_workers_run_is_finished_by_a_worker_sharing_only_database_and_bucket(
    tmp_path, db_url, s3_server, tiny_spec
):
    bucket = s3_server.create_bucket()
    url = f"s3://{bucket}/lab"
    procs = Processes(tmp_path, lease_seconds="2", database_url=db_url, artifact_url=url)
    procs.env |= s3_server.env
    db = Database(db_url)
    try:
        procs.start_server()
        spec = tiny_spec(epochs=EPOCHS, keep_snapshots=True)
        victim = procs.api("POST", "/runs", json=spec).json()["id"]
        # Each worker on a "machine" of its own: a data directory nobody else sees.
        doomed = procs.start_module("worker", DECAYLAB_DATA_DIR=str(tmp_path / "machine-a"))
        procs.wait_for_run(victim, lambda r: r["epochs_done"] >= 2, WAIT)
        procs.stop(doomed, signal.SIGKILL)
        assert procs.run(victim)["epochs_done"] < EPOCHS, "the run ended before the kill"
        twin = procs.api("POST", "/runs", json=spec).json()["id"]
        procs.start_module(
            "worker", "--exit-when-idle", DECAYLAB_DATA_DIR=str(tmp_path / "machine-b")
        )
        resumed = procs.wait_finished(victim, WAIT)
        undisturbed = procs.wait_finished(twin, WAIT)
        assert resumed["status"] == undisturbed["status"] == "succeeded", procs.logs()
        assert resumed["attempts"] == 2 and resumed["note"] is None, procs.logs()
        assert stored_results(db, victim) == stored_results(db, twin)
        for epoch in range(EPOCHS + 1):
            a, b = (
                np.load(io.BytesIO(procs.api("GET", f"/runs/{r}/snapshots/{epoch}").content))
                for r in (victim, twin)
            )
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
        assert s3_server.keys(bucket, f"lab/runs/{victim}/") == [
            key.replace(f"runs/{twin}/", f"runs/{victim}/")
            for key in s3_server.keys(bucket, f"lab/runs/{twin}/")
        ]
        for run_id in (victim, twin):
            assert procs.api("DELETE", f"/runs/{run_id}").status_code == 204
        assert s3_server.keys(bucket) == []
    finally:
        procs.close()
        db.dispose()


@pytest.mark.slow
def test_the_api_and_worker_processes_refuse_to_start_without_their_bucket(tmp_path, s3_server):
    procs = Processes(tmp_path, artifact_url="s3://no-such-bucket/lab")
    procs.env |= s3_server.env
    try:
        worker = procs.start_worker()
        assert worker.wait(timeout=60) == 2
        with pytest.raises(RuntimeError, match="exited"):
            procs.start_server()
        logs = procs.logs()
        assert logs.count("DECAYLAB_ARTIFACT_URL=s3://no-such-bucket/lab cannot be used") == 2
        assert "Traceback" not in logs
    finally:
        procs.close()
