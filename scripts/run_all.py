"""`make run`: the API and one worker in the foreground until Ctrl-C or SIGTERM stops both.

Each child runs in its own process group, so a Ctrl-C in the terminal reaches only this launcher,
which then sends each child exactly one SIGTERM (a second SIGTERM would make uvicorn skip its
graceful shutdown). The worker is started once the API answers, so the API has set the
database up first. Settings are the usual DECAYLAB_* variables (server/settings.py).
"""

import argparse
import ctypes
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from server.settings import Settings

POLL_SECONDS = 0.2
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# uvicorn re-raises the SIGTERM it handled once it has shut down cleanly.
CLEAN_EXITS = (0, -signal.SIGTERM)


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the launcher itself is killed (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _start(name: str, module: str) -> subprocess.Popen[bytes]:
    preexec = _die_with_parent if sys.platform == "linux" else None
    proc = subprocess.Popen([sys.executable, "-m", module], process_group=0, preexec_fn=preexec)
    _say(f"{name} started, pid {proc.pid}")
    return proc


def _say(message: str) -> None:
    print(f"decaylab: {message}", file=sys.stderr, flush=True)


def _health_url(settings: Settings) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}/health"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # it answered (e.g. 401 with a token set): the server is up
    except OSError:
        return False
    return True


def _wait_until(ready: Callable[[], bool], stopping: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        if ready():
            return True
        time.sleep(POLL_SECONDS)
    return False


def _stop(
    procs: dict[str, subprocess.Popen[bytes]], grace: float, forced: Callable[[], bool]
) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs.values()):
        if forced() or time.monotonic() > deadline:
            _say("killing what is left")
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
            for proc in procs.values():
                proc.wait()
            break
        time.sleep(POLL_SECONDS)
    for name, proc in procs.items():
        _say(f"{name} exited with {proc.returncode}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="seconds to wait for a clean stop (the worker hands its run back at its next batch) "
        "before killing; a second Ctrl-C kills at once",
    )
    parser.add_argument(
        "--startup-timeout", type=float, default=60.0, help="seconds to wait for the API"
    )
    args = parser.parse_args(argv)

    signals_seen: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: signals_seen.append(signum))

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    api = _start("api", "server")
    procs = {"api": api}
    url = _health_url(settings)

    def stopping() -> bool:
        return bool(signals_seen)

    failed = False
    if _wait_until(
        lambda: _answers(url), lambda: stopping() or api.poll() is not None, args.startup_timeout
    ):
        _say(f"api answers on {url.removesuffix('/health')}")
        procs["worker"] = _start("worker", "worker")
        # Until a signal arrives or a child ends on its own; either way all of them are stopped.
        while not stopping() and all(p.poll() is None for p in procs.values()):
            time.sleep(POLL_SECONDS)
        ended = [name for name, p in procs.items() if p.poll() is not None]
        if ended:
            _say(f"{' and '.join(ended)} stopped on its own; stopping the rest")
            failed = True
    elif not stopping():
        _say(f"api did not answer on {url}")
        failed = True
    _stop(procs, args.grace, lambda: len(signals_seen) > 1)
    return 1 if failed or any(p.returncode not in CLEAN_EXITS for p in procs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
