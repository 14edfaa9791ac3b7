"""Starting and stopping decaylab's processes: the API (``python -m server``) and workers
(``python -m worker``). ``make run`` (scripts/run_all.py), the end-to-end tests, the load
benchmark and ``make figures`` all start them through ``Processes``.

Each child runs in its own process group, so a Ctrl-C in the terminal reaches only the process
that started it, which then sends each child exactly one SIGTERM (a second SIGTERM would make
uvicorn skip its graceful shutdown); on Linux a child is also sent SIGTERM if its starter dies.
A child's output goes to a log file under ``log_dir`` (tests), or to the starter's own terminal.
"""

import ctypes
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

from server.store.lifecycle import FINISHED

# uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
CLEAN_EXITS = (0, -signal.SIGTERM)
POLL_SECONDS = 0.1
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port (another decaylab, say)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_for(check: Callable[[], T | None], timeout: float, what: str, logs: str = "") -> T:
    """Poll ``check`` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:g}s{logs}")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if its starter is killed (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Processes:
    """The API and workers on one set of DECAYLAB_* settings; ``close`` kills what is left.

    ``env`` is this process's environment plus ``settings`` (``lease_seconds="2"`` becomes
    DECAYLAB_LEASE_SECONDS); with ``root`` set, the data dir defaults to root/data, the device
    to the CPU, downloads are off, and each child logs to a file under root."""

    def __init__(self, root: Path | None = None, **settings: str) -> None:
        self.root = root
        self.env = dict(os.environ)
        if root is not None:
            self.env |= {
                "DECAYLAB_DATA_DIR": str(root / "data"),
                "DECAYLAB_DEVICE": "cpu",
                "DECAYLAB_ALLOW_DOWNLOAD": "0",
                "DECAYLAB_POLL_SECONDS": "0.1",
                # A font cache shared with the caller's when it has one (the tests' session):
                # building it anew costs each API process about a second at its first figure.
                "MPLCONFIGDIR": os.environ.get("MPLCONFIGDIR", str(root / "mpl")),
            }
        self.env |= {f"DECAYLAB_{k.upper()}": v for k, v in settings.items()}
        self.started: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Path] = []
        self.url = ""
        self._http: httpx.Client | None = None

    def start_module(self, module: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """``python -m module args`` with this object's environment plus ``env``."""
        name = f"{module}-{len(self.started)}"
        preexec = _die_with_parent if sys.platform == "linux" else None
        command = [sys.executable, "-m", module, *args]
        options: dict[str, Any] = {"process_group": 0, "preexec_fn": preexec}
        if self.root is None:
            proc = subprocess.Popen(command, env=self.env | env, **options)
        else:
            log = self.root / f"{name}.log"
            self._logs.append(log)
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    command, env=self.env | env, stdout=out, stderr=out, **options
                )
        self.started[name] = proc
        return proc

    @property
    def http(self) -> httpx.Client:
        """One client for every request to the children: a new httpx client builds a TLS
        context (~25 ms of CPU), far more than a request on loopback, and waits poll many
        times a second. No keep-alive, so a restarted API is never reached on a dead
        connection."""
        if self._http is None or self._http.is_closed:
            self._http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))
        return self._http

    def logs(self) -> str:
        tails = [f"\n--- {log.name} ---\n{log.read_text()[-3000:]}" for log in self._logs]
        return "".join(tails)

    def start_server(
        self,
        timeout: float = 60,
        port: int | None = None,
        host: str = "127.0.0.1",
        abort: Callable[[], bool] = lambda: False,
    ) -> subprocess.Popen[bytes]:
        """The API on ``port`` (default: a free one); returns once it answers. RuntimeError if
        it exits, or ``abort()`` says to give up, first."""
        port = port or free_port()
        proc = self.start_module("server", DECAYLAB_PORT=str(port), DECAYLAB_HOST=host)
        self.url = f"http://{_client_host(host)}:{port}"

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"the API exited with {proc.returncode}{self.logs()}")
            if abort():
                raise RuntimeError("stopped while the API was starting")
            try:
                # Any answer will do (a 401 with a token set means it is up, too).
                return self.http.get(f"{self.url}/health", timeout=1).status_code > 0
            except httpx.TransportError:
                return False

        wait_for(answers, timeout, "the API to answer", self.logs())
        return proc

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        return self.start_module("worker", *args)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit code."""
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    def stop_all(self, grace: float, forced: Callable[[], bool] = lambda: False) -> None:
        """One SIGTERM to each running child; SIGKILL what is left after ``grace`` seconds or
        once ``forced()`` says so."""
        running = [p for p in self.started.values() if p.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in running):
            if forced() or time.monotonic() > deadline:
                self.close()
                return
            time.sleep(POLL_SECONDS)

    def close(self) -> None:
        for proc in self.started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self._http is not None:
            self._http.close()

    # --- talking to the API, for tests and scripts ---

    def headers(self) -> dict[str, str]:
        """The bearer token the processes were given, if any (DECAYLAB_API_TOKEN)."""
        token = self.env.get("DECAYLAB_API_TOKEN")
        return {"Authorization": f"Bearer {token}"} if token else {}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers() | kwargs.pop("headers", {})
        return self.http.request(method, f"{self.url}{path}", timeout=30, headers=headers, **kwargs)

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


def _client_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]" if ":" in host else host
