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

    def stop(self, sig: int, group: bool) -> dict[str, tuple[int, int]]:
        """Send sig (to make's process group, like a terminal, or to make alone); wait for the
        end; return each child's (pid, exit status) from the launcher's log."""
        if group:
            os.killpg(self.make.pid, sig)
        else:
            self.make.send_signal(sig)
        self.make.wait(timeout=90)
        text = self.log.read_text()
        pids = dict(re.findall(r"decaylab: (\w+) started, pid (\d+)", text))
        codes = dict(re.findall(r"decaylab: (\w+) exited with (-?\d+)", text))
        assert pids.keys() == codes.keys() == {"api", "worker"}, text
        return {name: (int(pids[name]), int(codes[name])) for name in pids}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECAYLAB_")}
    env |= {
        "DECAYLAB_DATA_DIR": str(tmp_path / "data"),
        "DECAYLAB_PORT": str(port),
        "DECAYLAB_DEVICE": "cpu",
        "DECAYLAB_POLL_SECONDS": "0.2",
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
    }
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "--no-print-directory", "--assume-old=.venv/.installed-run", "run"]
            + [f"PY={sys.executable}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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

    exits = served.stop(signal.SIGINT, group=True)
    for name, (pid, code) in exits.items():
        assert code in CLEAN_EXITS, (name, code, served.logs())
        assert gone(pid), name
    with pytest.raises(OSError):
        served.request("GET", "/health")


def test_sigterm_stops_both_and_the_worker_hands_its_run_back(served):
    run = served.request("POST", "/runs", {"epochs": 1000, **TINY})
    served.wait_for_run(run["id"], lambda r: r["epochs_done"] >= 1, 120)

    exits = served.stop(signal.SIGTERM, group=False)  # as `kill` or a service manager would
    assert all(code in CLEAN_EXITS for _, code in exits.values()), served.logs()
    with sqlite3.connect(served.data_dir / "decaylab.db") as db:
        status, done = db.execute(
            "SELECT status, epochs_done FROM runs WHERE id = ?", (run["id"],)
        ).fetchone()
    assert status == "queued" and 1 <= done < 1000


def quick_start_lines() -> list[str]:
    section = (ROOT / "README.md").read_text().split("\n## Quick start\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    assert block, "README.md: no sh block in the quick start"
    return [line for line in block[1].splitlines() if line.strip()]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the quick start uses curl")
def test_readme_quick_start_works_pasted_line_by_line(served, tmp_path):
    port = served.url.rsplit(":", 1)[1]
    lines = quick_start_lines()
    assert any("/compare?" in line for line in lines) and any(".png" in line for line in lines)
    for line in lines:
        result = subprocess.run(
            ["bash", "-c", line.replace("localhost:8000", f"localhost:{port}")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, (line, result.stderr, served.logs())
        if result.stdout:
            assert "detail" not in json.loads(result.stdout), (line, result.stdout)
        for png in re.findall(r"-o (\S+\.png)", line):
            assert (tmp_path / png).read_bytes().startswith(b"\x89PNG"), (line, png)

    # What the README says the two runs show: weights stay exactly constant without decay only.
    compared = served.request("GET", "/compare?runs=1,2&tol=0&scope=all")["runs"]
    assert [run["weight_decay"] for run in compared] == [0, 0.001]
    assert max(compared[0]["percent"]) > 1 > max(compared[1]["percent"])
