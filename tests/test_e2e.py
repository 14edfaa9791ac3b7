"""End to end: real `python -m server` and `python -m worker` processes on a temp SQLite file."""

import signal

import pytest
from conftest import strip_run

from server.processes import CLEAN_EXITS

pytestmark = pytest.mark.slow  # real server and worker processes


def results(processes, run_id: int) -> dict:
    """What a run computed, over HTTP, without what differs between two runs (ids, timings)."""

    def get(view: str) -> dict:
        return processes.api("GET", f"/runs/{run_id}/{view}").json()

    return {
        "metrics": strip_run(get("metrics")),
        "constancy": [strip_run(r) for r in get("constancy")["results"]],
        "weights": strip_run(get("weights")),
    }


def test_a_synthetic_job_runs_to_succeeded_and_sigterm_hands_a_run_back(processes, tiny_spec):
    server = processes.start_server()
    worker = processes.start_worker()
    created = processes.api("POST", "/runs", json=tiny_spec(epochs=3))
    assert created.status_code == 201
    run = processes.wait_finished(created.json()["id"])
    assert run["status"] == "succeeded", processes.logs()
    assert run["epochs_done"] == 3 and run["attempts"] == 1 and run["device"] == "cpu"
    assert run["worker"].endswith(f":{worker.pid}")
    body = processes.api("GET", f"/runs/{run['id']}/constancy", params={"tol": 0}).json()
    assert body["epochs"] == [1, 2, 3] and len(body["mean"]) == 3

    # SIGTERM mid-run: the worker stops at a batch boundary, hands the run back, exits 0.
    long_run = processes.api("POST", "/runs", json=tiny_spec(epochs=500)).json()["id"]
    processes.wait_for_run(long_run, lambda r: r["epochs_done"] >= 1)
    assert processes.stop(worker) == 0
    handed_back = processes.run(long_run)
    assert handed_back["status"] == "queued" and handed_back["epochs_done"] < 500
    assert processes.stop(server) in CLEAN_EXITS


def test_a_run_whose_worker_is_killed_resumes_elsewhere_exactly(processes, tiny_spec):
    processes.start_server()
    first = processes.start_worker()
    spec = tiny_spec(epochs=12, name="resumed")
    run_id = processes.api("POST", "/runs", json=spec).json()["id"]
    processes.wait_for_run(run_id, lambda r: r["epochs_done"] >= 2)
    processes.stop(first, signal.SIGKILL)
    killed = processes.run(run_id)
    assert killed["status"] == "running" and killed["epochs_done"] < 12

    # A new worker takes the run over once the dead one's lease (2 s) lapses.
    processes.start_worker()
    resumed = processes.wait_finished(run_id)
    assert resumed["status"] == "succeeded" and resumed["attempts"] == 2, processes.logs()
    assert resumed["worker"] != killed["worker"]
    undisturbed = processes.api("POST", "/runs", json=spec).json()["id"]
    assert processes.wait_finished(undisturbed)["attempts"] == 1
    assert results(processes, run_id) == results(processes, undisturbed)
