"""`make run` serves a synthetic run to `succeeded`, and Ctrl-C or SIGTERM stops the API and the
worker (the README's and the docs' blocks are pasted against it in tests/test_docs.py).

`make run` runs as a user's terminal would: in its own session, Ctrl-C being a SIGINT to the
whole foreground process group. The existing interpreter stands in for .venv (its install is
assumed current: `make test` has just made it so); `make_run` and `Served` are in conftest."""

import os
import signal
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Served, make_run, make_run_served

from server.processes import CLEAN_EXITS, FINISHED

pytestmark = pytest.mark.slow

TINY = {"dataset": "synthetic", "hidden_sizes": [32], "train_size": 512, "test_size": 256}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with make_run_served(tmp_path) as served:
        yield served


def a_second_make_run_on_its_port_says_so_and_starts_nothing(served: Served, tmp_path: Path):
    """Checked while the first one serves (it saves a `make run` of its own)."""
    port = int(served.url.rsplit(":", 1)[1])
    other = tmp_path / "second"
    other.mkdir()
    log = other / "make-run.log"
    second = make_run(other, port, log)
    assert second.wait(timeout=60) != 0
    text = log.read_text()
    assert f"port {port}" in text and "in use" in text and "nothing started" in text, text
    assert "started, pid" not in text
    assert not (other / "data").exists()  # not even a database
    # The first one still serves.
    assert served.request("GET", "/health") == {"status": "ok"}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_make_run_serves_a_synthetic_run_to_succeeded_and_ctrl_c_stops_both(served, tmp_path):
    run = served.request("POST", "/runs", {"name": "make run", "epochs": 2, **TINY})
    assert run["status"] == "queued"
    a_second_make_run_on_its_port_says_so_and_starts_nothing(served, tmp_path)
    run = served.wait_for_run(run["id"], lambda r: r["status"] in FINISHED, 240)
    assert run["status"] == "succeeded", run
    assert run["epochs_done"] == 2
    constancy = served.request("GET", f"/runs/{run['id']}/constancy?tol=0")
    assert len(constancy["layers"]) == 2  # hidden_sizes [32]: two Linear layers

    for name, pid in served.stop(signal.SIGINT, group=True).items():
        assert gone(pid), name
    with pytest.raises(OSError):
        served.request("GET", "/health")


def test_ctrl_c_with_an_event_stream_open_ends_the_stream_at_once_and_calmly(served):
    """A `decaylab watch` (an open event stream) does not hold the API up when Ctrl-C stops
    `make run`: the stream ends, no CancelledError traceback, one calm last line."""
    run = served.request("POST", "/runs", {"epochs": 1000, **TINY})
    served.wait_for_run(run["id"], lambda r: r["epochs_done"] >= 1, 120)
    events: list[str] = []
    with urllib.request.urlopen(f"{served.url}/runs/{run['id']}/events", timeout=60) as stream:
        for line in stream:
            if line.startswith(b"event: "):
                events.append(line.decode().split(": ", 1)[1].strip())
            if "status" in events:  # the stored epochs, then its status: the stream is live
                break
        for name, pid in served.stop(signal.SIGINT, group=True).items():
            assert gone(pid), name
        # The server ended the stream itself (no "end": the run is not over, only the server).
        rest = stream.read().decode()
    assert "event: end" not in rest


def test_sigterm_stops_both_and_the_worker_hands_its_run_back(served):
    run = served.request("POST", "/runs", {"epochs": 1000, **TINY})
    served.wait_for_run(run["id"], lambda r: r["epochs_done"] >= 1, 120)

    served.stop(signal.SIGTERM, group=False)  # as `kill` or a service manager would
    with sqlite3.connect(served.data_dir / "decaylab.db") as db:
        status, done = db.execute(
            "SELECT status, epochs_done FROM runs WHERE id = ?", (run["id"],)
        ).fetchone()
    assert status == "queued" and 1 <= done < 1000


def test_sigterm_to_the_process_group_hands_the_run_back(served):
    """`kill -TERM -<pgid>` (a service manager, `timeout`, a closing terminal's group): the
    launcher, the API and the worker all get it at once; all stop cleanly, and the run goes back
    to the queue without counting as another attempt."""
    run = served.request("POST", "/runs", {"epochs": 1000, **TINY})
    running = served.wait_for_run(run["id"], lambda r: r["epochs_done"] >= 1, 120)
    assert running["attempts"] == 1

    for name, pid in served.stop(signal.SIGTERM, group=True).items():
        assert gone(pid), name
    # make is in the group too: it ends by the SIGTERM itself (its recipe, the launcher, ran on).
    assert served.make.returncode in CLEAN_EXITS, served.logs()
    assert "stopped on its own" not in served.log.read_text()
    with sqlite3.connect(served.data_dir / "decaylab.db") as db:
        status, done, attempts, worker = db.execute(
            "SELECT status, epochs_done, attempts, worker FROM runs WHERE id = ?", (run["id"],)
        ).fetchone()
    assert status == "queued" and 1 <= done < 1000
    assert attempts == 1  # handed back, not lost: the next claim is its second attempt
    assert worker is None or isinstance(worker, str)
