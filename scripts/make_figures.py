"""`make figures`: the seed's figures for its pair of runs (weight decay 0 and 0.001), via the API.

Starts `python -m server` and `python -m worker` on a temporary data directory (or talks to a
running server with --url), submits the two runs on the synthetic dataset, waits for them and
downloads their PNGs into docs/img/:

    constancy_wd0.png, constancy_wd0.001.png   % of weights constant per layer, 2×2 tolerances
    compare_all.png, compare_last2.png         the two runs, mean of all / of the last two layers
    loss_wd*.png, accuracy_wd*.png             train vs test curves
    weights_wd*.png                            each layer's weight variance per epoch
"""

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.processes import Processes

ROOT = Path(__file__).resolve().parent.parent

WEIGHT_DECAYS = (0.0, 0.001)
POLL_SECONDS = 1.0


def say(message: str) -> None:
    print(f"make_figures: {message}", file=sys.stderr, flush=True)


def _request(url: str, body: dict[str, Any] | None = None) -> tuple[str, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    # An API started with DECAYLAB_API_TOKEN (ours inherits the environment) wants it back.
    if token := os.environ.get("DECAYLAB_API_TOKEN", "").strip():
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        raise SystemExit(f"{url}: HTTP {error.code}: {detail}") from None


def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    return json.loads(_request(url, body)[1])


@contextmanager
def _local_service(root: Path, workers: int = 1) -> Iterator[str]:
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


def _wait_for(url: str, run_ids: list[int], timeout: float) -> None:
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
    content_type, body = _request(f"{url}{path}?{query}")
    if content_type != "image/png":
        raise SystemExit(f"{path}?{query} answered {content_type}, not image/png")
    target.write_bytes(body)
    say(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target}")


def train_pair(url: str, spec: dict[str, Any], timeout: float) -> list[int]:
    """Submit the seed's pair (one run per WEIGHT_DECAYS) and wait until both succeeded."""
    ids = []
    for decay in WEIGHT_DECAYS:
        name = "baseline" if decay == 0 else "weight decay"
        run = get_json(f"{url}/runs", {**spec, "name": name, "weight_decay": decay})
        say(f"submitted run {run['id']} ({name}, weight decay {decay:g})")
        ids.append(run["id"])
    _wait_for(url, ids, timeout)
    return ids


def make_figures(url: str, out: Path, spec: dict[str, Any], timeout: float) -> None:
    ids = train_pair(url, spec, timeout)
    out.mkdir(parents=True, exist_ok=True)
    for run_id, decay in zip(ids, WEIGHT_DECAYS, strict=True):
        suffix = f"wd{decay:g}"
        download(
            url, f"/runs/{run_id}/constancy", {"scope": "layers"}, out / f"constancy_{suffix}.png"
        )
        for metric in ("loss", "accuracy"):
            download(
                url, f"/runs/{run_id}/metrics", {"metric": metric}, out / f"{metric}_{suffix}.png"
            )
        download(url, f"/runs/{run_id}/weights", {}, out / f"weights_{suffix}.png")
    runs = ",".join(map(str, ids))
    for scope in ("all", "last2"):
        download(url, "/compare", {"runs": runs, "scope": scope}, out / f"compare_{scope}.png")


Make = Callable[[str, Path, dict[str, Any], float], None]


def main(
    argv: list[str] | None = None,
    make: Make = make_figures,
    doc: str = __doc__,
    *,
    epochs: int = 25,
    train_size: int = 5_000,
    test_size: int = 2_000,
    workers: int = 1,
) -> int:
    """The command line of ``make`` (this script's, or another figure script's reusing it, with
    its own default sizes and number of local workers)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--url", help="a running decaylab API (default: start one with a worker)")
    parser.add_argument("--workers", type=int, default=workers, help="local workers (no --url)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--train-size", type=int, default=train_size)
    parser.add_argument("--test-size", type=int, default=test_size)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the runs")
    args = parser.parse_args(argv)
    # The seed's experiment on synthetic CIFAR-shaped data, smaller so that it runs on a CPU.
    spec = {
        "dataset": "synthetic",
        "epochs": args.epochs,
        "train_size": args.train_size,
        "test_size": args.test_size,
    }
    if args.url:
        make(args.url.rstrip("/"), args.out, spec, args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="decaylab-figures-") as data_dir:
            with _local_service(Path(data_dir), args.workers) as url:
                make(url, args.out, spec, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
