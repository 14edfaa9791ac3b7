"""Real decaylab processes for end-to-end tests: the API on a free port, workers, polling.

Each process logs to a file under the test's directory; a failed wait shows the logs' tails.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

FINISHED = ("succeeded", "failed", "cancelled")
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], T | None], timeout: float, what: str, logs: str = "") -> T:
    """Poll ``check`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:g}s{logs}")


class Processes:
    """Starts ``python -m server`` / ``python -m worker`` on one data dir; stops them all at end.

    ``env`` holds the DECAYLAB_* settings every process gets: a temp data dir (with its SQLite
    file), CPU, no downloads, a short poll interval; pass more to the constructor."""

    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        self.env = os.environ | {
            "DECAYLAB_DATA_DIR": str(root / "data"),
            "DECAYLAB_DEVICE": "cpu",
            "DECAYLAB_ALLOW_DOWNLOAD": "0",
            "DECAYLAB_POLL_SECONDS": "0.1",
            "MPLCONFIGDIR": str(root / "mpl"),
        }
        self.env |= {f"DECAYLAB_{k.upper()}": v for k, v in settings.items()}
        self._started: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.url = ""

    def _start(self, module: str, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.root / f"{module}-{len(self._started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args], env=env, stdout=out, stderr=out
            )
        self._started.append((proc, log))
        return proc

    def logs(self) -> str:
        tails = [f"\n--- {log.name} ---\n{log.read_text()[-3000:]}" for _, log in self._started]
        return "".join(tails)

    def start_server(self, timeout: float = 60) -> subprocess.Popen[bytes]:
        """The API on a free port; returns once GET /health answers 200."""
        port = free_port()
        proc = self._start("server", env=self.env | {"DECAYLAB_PORT": str(port)})
        self.url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}{self.logs()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout, "the server's /health", self.logs())
        return proc

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        return self._start("worker", *args, env=self.env)

    def start_module(self, module: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """Any ``python -m module`` (e.g. a test's wrapper around the worker) with more env."""
        return self._start(module, *args, env=self.env | env)

    def headers(self) -> dict[str, str]:
        """The bearer token the processes were given, if any (DECAYLAB_API_TOKEN)."""
        token = self.env.get("DECAYLAB_API_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers() | kwargs.pop("headers", {})
        return httpx.request(method, f"{self.url}{path}", timeout=30, headers=headers, **kwargs)

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.api("GET", f"/runs/{run_id}")
        response.raise_for_status()
        return response.json()

    def wait_for_run(
        self, run_id: int, until: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if until(run) else None

        return wait_for(check, timeout, f"run {run_id}", self.logs())

    def wait_finished(self, run_id: int, timeout: float = 120) -> dict[str, Any]:
        return self.wait_for_run(run_id, lambda run: run["status"] in FINISHED, timeout)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit code."""
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    def close(self) -> None:
        for proc, _ in self._started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
