"""`make run`: the API and one worker in the foreground until Ctrl-C or SIGTERM stops both.

The worker is started once the API answers, so the API has set the database up first. Settings
are the usual DECAYLAB_* variables (server/core/settings.py). Stopping: Ctrl-C, SIGTERM or SIGHUP
(a terminal closing, `docker stop`, a service manager, or a signal to the whole process group)
sends each child one SIGTERM and waits up to --grace seconds (the worker hands its run back at
its next batch); only a second Ctrl-C kills at once.
"""

import argparse
import signal
import sys
import time

from server.core.settings import Settings
from server.processes import CLEAN_EXITS, POLL_SECONDS, Processes, port_in_use

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What the user reads for each module started.
NAMES = {"server": "api", "worker": "worker"}


def _say(message: str) -> None:
    print(f"decaylab: {message}", file=sys.stderr, flush=True)


def _started(procs: Processes) -> None:
    """Name the newest child and its pid."""
    name, proc = list(procs.started.items())[-1]
    _say(f"{NAMES[name.split('-')[0]]} started, pid {proc.pid}")


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

    settings = Settings()
    if port_in_use(settings.host, settings.port):
        _say(
            f"port {settings.port} on {settings.host} is in use (another decaylab?); nothing"
            " started. Stop that one, or choose another port with DECAYLAB_PORT."
        )
        return 1
    signals_seen: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: signals_seen.append(signum))

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    failed = False
    try:
        procs.start_server(
            args.startup_timeout,
            port=settings.port,
            host=settings.host,
            abort=lambda: bool(signals_seen),
        )
    except (RuntimeError, TimeoutError) as exc:
        _started(procs)
        if not signals_seen:
            _say(f"the API did not start: {exc}")
            failed = True
    else:
        _started(procs)
        _say(f"api answers on {procs.url}")
        if not signals_seen:
            procs.start_worker()
            _started(procs)
        # Until a signal arrives or a child ends on its own; either way all of them are stopped.
        while not signals_seen and all(p.poll() is None for p in procs.started.values()):
            time.sleep(POLL_SECONDS)
        if not signals_seen:
            _say("a process stopped on its own; stopping the rest")
            failed = True
    # A terminal's Ctrl-C reaches only this launcher; a second one means "now".
    procs.stop_all(args.grace, forced=lambda: signals_seen.count(signal.SIGINT) > 1)
    unclean = {n: p.returncode for n, p in procs.started.items() if p.returncode not in CLEAN_EXITS}
    if failed or unclean:
        for name, code in unclean.items():
            _say(f"{NAMES[name.split('-')[0]]} exited with {code}")
        return 1
    # A SIGTERM handled to the end is how both stop cleanly: nothing more to say.
    _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
