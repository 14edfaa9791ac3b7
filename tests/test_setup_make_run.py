"""`make run` serves a synthetic run to `succeeded`, the README's quick start works against it,
and Ctrl-C or SIGTERM stops the API and the worker.

`make run` runs as a user's terminal would: in its own session, Ctrl-C being a SIGINT to the
whole foreground process group. The existing interpreter stands in for .venv (its install is
assumed current: `make test` has just made it so)."""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.processes import CLEAN_EXITS, FINISHED, free_port, wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TINY = {"dataset": "synthetic", "hidden_sizes": [32], "train_size": 512, "test_size": 256}


@dataclass
class Served:
    make: subprocess.Popen[bytes]
    url: str
    log: Path
    data_dir: Path

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.load(response)

    def logs(self) -> str:
        return f"\n--- make run ---\n{self.log.read_text()[-5000:]}"

    def wait_for_run(self, run_id: int, done: Callable[[dict], bool], timeout: float) -> dict:
        def check() -> dict | None:
            assert self.make.poll() is None, self.logs()
            run = self.request("GET", f"/runs/{run_id}")
            return run if done(run) else None

        return wait_for(check, timeout, f"run {run_id}", self.logs())

    def stop(self, sig: int, group: bool) -> dict[str, int]:
        """Send sig (to make's process group, like a terminal, or to make alone); wait for the
        end, which must be clean and calm: one last line, no exit codes, no traceback. Returns
        each child's pid from the launcher's log."""
        if group:
            os.killpg(self.make.pid, sig)
        else:
            self.make.send_signal(sig)
        self.make.wait(timeout=90)
        text = self.log.read_text()
        pids = {
            name: int(pid) for name, pid in re.findall(r"decaylab: (\w+) started, pid (\d+)", text)
        }
        assert pids.keys() == {"api", "worker"}, text
        assert "exited with" not in text and "Traceback" not in text, text
        assert text.rstrip().endswith("decaylab: stopped"), text
        return pids


def make_run(tmp_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`make run` in a session of its own, as a terminal starts it, on a temp data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECAYLAB_")}
    env |= {
        "DECAYLAB_DATA_DIR": str(tmp_path / "data"),
        "DECAYLAB_PORT": str(port),
        "DECAYLAB_DEVICE": "cpu",
        "DECAYLAB_POLL_SECONDS": "0.2",
        "DECAYLAB_ALLOW_DOWNLOAD": "false",  # a cifar10 run fails at once, offline
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            ["make", "--no-print-directory", "--assume-old=.venv/.installed-run", "run"]
            + [f"PY={sys.executable}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    log = tmp_path / "make-run.log"
    make = make_run(tmp_path, port, log)
    served = Served(make, f"http://127.0.0.1:{port}", log, tmp_path / "data")
    try:

        def worker_started() -> bool:
            assert make.poll() is None, served.logs()
            return "decaylab: worker started" in log.read_text()

        wait_for(worker_started, 90, "make run to start the worker", served.logs())
        yield served
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)  # the children follow (PR_SET_PDEATHSIG)
            make.wait()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_make_run_serves_a_synthetic_run_to_succeeded_and_ctrl_c_stops_both(served):
    run = served.request("POST", "/runs", {"name": "make run", "epochs": 2, **TINY})
    assert run["status"] == "queued"
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


def test_a_second_make_run_on_a_busy_port_says_so_and_starts_nothing(served, tmp_path):
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


def readme_block(heading: str, marker: str) -> str:
    """The first sh block after ``heading`` that contains ``marker``."""
    section = (ROOT / "README.md").read_text().split(f"\n{heading}\n", 1)[1]
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        if marker in block:
            return block
    raise AssertionError(f"README.md: no sh block with {marker!r} after {heading!r}")


def paste(
    served: Served, script: str, cwd: Path, timeout: float = 420
) -> subprocess.CompletedProcess:
    """Run pasted README lines in bash as a user's terminal would, against ``served``; any
    failing command fails the paste (-e), as the user would see it fail."""
    port = served.url.rsplit(":", 1)[1]
    return subprocess.run(
        [
            "bash",
            "-e",
            "-o",
            "pipefail",
            "-c",
            script.replace("localhost:8000", f"localhost:{port}"),
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


QUICK_START = ("## Quick start", "wait_for $A succeeded")
EXAMPLES = ("### Endpoints", "snapshots/5")


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quick start uses curl")
def test_readme_quick_start_and_examples_work_as_pasted(served, tmp_path):
    # ./data already holds runs: the blocks must not assume ids 1 and 2.
    earlier = served.request("POST", "/runs", {"name": "earlier", "epochs": 1, **TINY})
    served.wait_for_run(earlier["id"], lambda r: r["status"] in FINISHED, 120)
    script = readme_block(*QUICK_START) + readme_block(*EXAMPLES)
    assert "/compare?" in script and ".png" in script and "snapshots/5" in script
    result = paste(served, script, tmp_path)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:], served.logs())
    assert "both succeeded" in result.stdout
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            assert "detail" not in json.loads(line), line
    for png in re.findall(r"-o (\S+\.png)", script):
        name = png.replace("$A", str(earlier["id"] + 1))
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), png
    npz = (tmp_path / "epoch_0005.npz").read_bytes()
    assert npz.startswith(b"PK")  # a zip: numpy's .npz, not a saved error
    assert result.stdout.rstrip().endswith('{"status":"ok"}')
    assert "204" in result.stdout.splitlines()

    # What the README says the two runs show: weights stay exactly constant without decay only.
    a, b = earlier["id"] + 1, earlier["id"] + 2
    compared = served.request("GET", f"/compare?runs={a},{b}&tol=0&scope=all")["runs"]
    assert [run["weight_decay"] for run in compared] == [0, 0.001]
    assert max(compared[0]["percent"]) > 1 > max(compared[1]["percent"])


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quick start uses curl")
def test_readme_quick_start_fails_loudly_when_a_run_fails(served, tmp_path):
    """A run that fails (here: CIFAR-10 offline) stops the quick start at once with a message,
    instead of waiting forever."""
    script = readme_block(*QUICK_START)
    first_spec = '"name": "no decay", "weight_decay": 0, "dataset": "synthetic"'
    assert first_spec in script
    failing = script.replace(
        first_spec, '"name": "no decay", "weight_decay": 0, "dataset": "cifar10"'
    )
    started = time.monotonic()
    result = paste(served, failing, tmp_path, timeout=120)
    assert result.returncode != 0
    assert time.monotonic() - started < 60
    assert "is failed, not succeeded" in result.stderr, result.stderr
    assert not list(tmp_path.glob("*.png"))  # nothing after the failure ran
