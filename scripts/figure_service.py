"""What the figure scripts share: talking to the API (with the token, if any), a local API and
worker to talk to, waiting for runs and downloading PNGs. scripts/make_figures.py and
scripts/make_sweep_figures.py import it (run as scripts, their directory is on sys.path)."""

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.processes import Processes

ROOT = Path(__file__).resolve().parent.parent

POLL_SECONDS = 1.0


def say(message: str) -> None:
    print(f"{Path(sys.argv[0]).stem}: {message}", file=sys.stderr, flush=True)


def request(url: str, body: dict[str, Any] | None = None) -> tuple[str, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    # An API started with DECAYLAB_API_TOKEN (ours inherits the environment) wants it back.
    if token := os.environ.get("DECAYLAB_API_TOKEN", "").strip():
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as response:
            return response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        raise SystemExit(f"{url}: HTTP {error.code}: {detail}") from None


def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    return json.loads(request(url, body)[1])


@contextmanager
def local_service(root: Path, workers: int = 1) -> Iterator[str]:
    """An API and ``workers`` workers on a fresh SQLite file under root; yields the API's URL
    and stops them afterwards. Their logs are shown when something fails."""
    # On whatever device this machine has (the test helper's default is the CPU).
    procs = Processes(root, device=os.environ.get("DECAYLAB_DEVICE", "auto"), database_url="")
    try:
        procs.start_server()
        for _ in range(workers):
            procs.start_worker()
        yield procs.url
    except BaseException:
        say(procs.logs())
        raise
    finally:
        # SIGTERM: the worker hands its run back; what does not stop in time is killed.
        procs.stop_all(grace=60)


def wait_for(url: str, run_ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    shown: dict[int, tuple[str, int]] = {}
    while time.monotonic() < deadline:
        runs = [get_json(f"{url}/runs/{i}") for i in run_ids]
        for run in runs:
            progress = (run["status"], run["epochs_done"])
            if shown.get(run["id"]) != progress:
                shown[run["id"]] = progress
                say(f"run {run['id']}: {progress[0]}, {progress[1]}/{run['spec']['epochs']} epochs")
        failed = [r for r in runs if r["status"] in ("failed", "cancelled")]
        if failed:
            raise SystemExit(f"run {failed[0]['id']} {failed[0]['status']}: {failed[0]['error']}")
        if all(r["status"] == "succeeded" for r in runs):
            return
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"the runs did not finish within {timeout:.0f} s")


def download(url: str, path: str, params: dict[str, Any], target: Path) -> None:
    query = urllib.parse.urlencode({**params, "format": "png"})
    content_type, body = request(f"{url}{path}?{query}")
    if content_type != "image/png":
        raise SystemExit(f"{path}?{query} answered {content_type}, not image/png")
    target.write_bytes(body)
    say(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")
