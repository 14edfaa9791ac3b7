"""Load: concurrent clients against a real `python -m server` and `python -m worker` on SQLite.

Two finished runs are prepared, then a long run trains (the worker writes an epoch every fraction
of a second) while the clients, in phases of ``--seconds`` each:

1. ask for ``GET /health`` only: the framework's own floor on this machine;
2. ask for one read alone, for each read below: its throughput as a share of the floor;
3. loop over the reads below (the read mix), then over all of them (the mix):

    POST /runs                          a tiny synthetic job (queued behind the training run)
    GET  /runs/{id}                     a random run, the training one included
    GET  /runs?limit=20                 the newest runs
    GET  /runs/{training}/constancy     the run being written, at tol 0
    GET  /runs/{finished}/constancy     every tolerance
    GET  /compare?runs=a,b&tol=0        the two finished runs
    GET  .../constancy?format=png       a figure (a cache hit after the first)
    GET  /compare?...&format=png        a comparison figure

An error is a transport failure or any status but the expected 201/200. The server's and the
worker's logs are searched for "database is locked". Prints each phase's throughput and share
of the floor with its p50/p99 latency, and the mix's p50/p95/p99 per kind; exits 1 on any
error.

    python benchmarks/load_test.py              # 50 clients, 20 s a phase (docs/benchmarks.md)
    python benchmarks/load_test.py --quick      # 10 clients, 3 s a phase (`make bench`)
    python benchmarks/load_test.py --clients 20 --seconds 10 --json load.json
"""

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from server.processes import Processes

TINY = {"dataset": "synthetic", "hidden_sizes": [16], "train_size": 256, "test_size": 128}
# An epoch of this takes a fraction of a second on a CPU: the worker writes all along.
TRAINING = {"dataset": "synthetic", "hidden_sizes": [32], "train_size": 1024, "epochs": 1000}
LOCKED = "database is locked"
HEALTH = "GET /health"
WRITES = {"POST /runs"}


@dataclass
class Sample:
    kind: str
    seconds: float
    error: str | None = None


@dataclass
class Targets:
    finished: list[int]
    training: int
    png: bool
    ids: list[int] = field(default_factory=list)


Request = Callable[[httpx.Client, random.Random, Targets], httpx.Response]


def mix(targets: Targets) -> dict[str, tuple[int, int, Request]]:
    """kind -> (weight, expected status, request)."""
    a, b = targets.finished
    runs = f"{a},{b}"
    kinds: dict[str, tuple[int, int, Request]] = {
        HEALTH: (1, 200, lambda c, rng, t: c.get("/health")),
        "POST /runs": (
            10,
            201,
            lambda c, rng, t: c.post("/runs", json=TINY | {"epochs": 1, "seed": rng.randrange(9)}),
        ),
        "GET /runs/{id}": (25, 200, lambda c, rng, t: c.get(f"/runs/{rng.choice(t.ids)}")),
        "GET /runs": (10, 200, lambda c, rng, t: c.get("/runs", params={"limit": 20})),
        "constancy (training run)": (
            15,
            200,
            lambda c, rng, t: c.get(f"/runs/{t.training}/constancy", params={"tol": 0}),
        ),
        "constancy (all tolerances)": (
            15,
            200,
            lambda c, rng, t: c.get(f"/runs/{rng.choice(t.finished)}/constancy"),
        ),
        "compare": (10, 200, lambda c, rng, t: c.get("/compare", params={"runs": runs, "tol": 0})),
    }
    if targets.png:
        kinds["constancy PNG"] = (
            10,
            200,
            lambda c, rng, t: c.get(f"/runs/{rng.choice(t.finished)}/constancy?format=png"),
        )
        kinds["compare PNG"] = (
            5,
            200,
            lambda c, rng, t: c.get("/compare", params={"runs": runs, "format": "png"}),
        )
    return kinds


def client_loop(
    url: str, headers: dict[str, str], targets: Targets, seed: int, until: float, only: list[str]
) -> list[Sample]:
    rng = random.Random(seed)
    kinds = mix(targets)
    names = only
    weights = [kinds[name][0] for name in names]
    samples = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while time.monotonic() < until:
            kind = rng.choices(names, weights)[0]
            _, expected, request = kinds[kind]
            started = time.perf_counter()
            try:
                response = request(client, rng, targets)
                error = None
                if response.status_code != expected:
                    error = f"{kind}: {response.status_code} {response.text[:200]}"
                elif kind == "POST /runs":
                    targets.ids.append(response.json()["id"])  # list.append is atomic
            except httpx.HTTPError as exc:
                error = f"{kind}: {type(exc).__name__}: {exc}"
            samples.append(Sample(kind, time.perf_counter() - started, error))
    return samples


def percentiles(seconds: list[float]) -> dict[str, float]:
    if len(seconds) < 2:
        value = seconds[0] * 1000 if seconds else 0.0
        return {"p50_ms": value, "p95_ms": value, "p99_ms": value, "max_ms": value}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {
        "p50_ms": cuts[49] * 1000,
        "p95_ms": cuts[94] * 1000,
        "p99_ms": cuts[98] * 1000,
        "max_ms": max(seconds) * 1000,
    }


def prepare(procs: Processes) -> Targets:
    """Two finished runs, then a long one the worker is training when this returns."""
    finished = [procs.api("POST", "/runs", json=TINY | {"epochs": 3}).json()["id"] for _ in "ab"]
    for run_id in finished:
        if procs.wait_finished(run_id)["status"] != "succeeded":
            raise RuntimeError(f"run {run_id} did not succeed{procs.logs()}")
    training = procs.api("POST", "/runs", json=TRAINING).json()["id"]
    procs.wait_for_run(training, lambda run: run["epochs_done"] >= 1)
    png = procs.api("GET", f"/runs/{finished[0]}/constancy", params={"format": "png"})
    has_png = png.status_code == 200 and png.headers["content-type"] == "image/png"
    return Targets(finished, training, has_png, ids=[*finished, training])


def phase(
    procs: Processes, targets: Targets, clients: int, seconds: float, kinds: list[str]
) -> tuple[float, list[Sample]]:
    """``clients`` threads looping over ``kinds`` for ``seconds``: elapsed time and samples.

    The clients stand for users on other machines: their own garbage collection must not count
    in the latencies. A full collection here, with the earlier phases' samples in memory, paused
    every client thread for 120-420 ms, 2-4 times a phase (more than 1 % of the requests).
    So the collector is off during a phase, and what is left from before is frozen out of it."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        return _phase(procs, targets, clients, seconds, kinds)
    finally:
        gc.enable()


def _phase(
    procs: Processes, targets: Targets, clients: int, seconds: float, kinds: list[str]
) -> tuple[float, list[Sample]]:
    until = time.monotonic() + seconds
    results: list[list[Sample]] = [[] for _ in range(clients)]

    def work(i: int) -> None:
        results[i] = client_loop(procs.url, procs.headers(), targets, i, until, kinds)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started, [s for per_client in results for s in per_client]


def by_kind(samples: list[Sample]) -> dict[str, dict[str, Any]]:
    return {
        kind: {
            "requests": len(rows),
            "errors": sum(1 for s in rows if s.error),
            **percentiles([s.seconds for s in rows]),
        }
        for kind in sorted({s.kind for s in samples})
        for rows in [[s for s in samples if s.kind == kind]]
    }


def run(clients: int, seconds: float, root: Path) -> dict[str, Any]:
    procs = Processes(root, lease_seconds="10")
    try:
        procs.start_server()
        procs.start_worker()
        targets = prepare(procs)
        every = list(mix(targets))
        reads = [kind for kind in every if kind not in WRITES]
        epochs_before = procs.run(targets.training)["epochs_done"]
        phases = [("GET /health (floor)", [HEALTH])]
        phases += [(kind, [kind]) for kind in reads if kind != HEALTH]
        phases += [
            ("read mix", [k for k in reads if k != HEALTH]),
            ("mix", [k for k in every if k != HEALTH]),
        ]
        throughput: dict[str, float] = {}
        latency: dict[str, dict[str, float]] = {}
        samples: list[Sample] = []
        for name, kinds in phases:
            elapsed, found = phase(procs, targets, clients, seconds, kinds)
            throughput[name] = len(found) / elapsed
            latency[name] = percentiles([s.seconds for s in found])
            samples += found
            if name == "mix":
                mixed, mix_seconds = found, elapsed
        training = procs.run(targets.training)
        procs.api("POST", f"/runs/{targets.training}/cancel")
        # Whole logs: a lock error anywhere counts, not only in the tails procs.logs() shows.
        locked = sum(log.read_text().count(LOCKED) for log in root.glob("*.log"))
    finally:
        procs.close()
    errors = [s.error for s in samples if s.error]
    floor = throughput["GET /health (floor)"]
    return {
        "clients": clients,
        "seconds_per_phase": seconds,
        "requests": len(samples),
        "errors": len(errors),
        "error_examples": errors[:10],
        "database_locked": sum(e.count(LOCKED) for e in errors) + locked,
        "throughput": {
            name: {
                "requests_per_second": round(rps, 1),
                "share_of_floor": round(rps / floor, 2),
                "p50_ms": round(latency[name]["p50_ms"], 1),
                "p99_ms": round(latency[name]["p99_ms"], 1),
            }
            for name, rps in throughput.items()
        },
        "mix_seconds": round(mix_seconds, 1),
        "epochs_trained_meanwhile": training["epochs_done"] - epochs_before,
        "png": targets.png,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        **percentiles([s.seconds for s in mixed]),
        "requests_in_mix": len(mixed),
        "by_kind": by_kind(mixed),
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['clients']} clients, {result['seconds_per_phase']} s a phase "
        f"({result['machine']}): {result['requests']} requests, {result['errors']} errors, "
        f'{result["database_locked"]} "{LOCKED}"; the worker stored '
        f"{result['epochs_trained_meanwhile']} epochs meanwhile\n"
    )
    print("| phase | requests/s | share of the /health floor | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, row in result["throughput"].items():
        print(
            f"| {name} | {row['requests_per_second']:.0f} | {row['share_of_floor']:.2f} "
            f"| {row['p50_ms']:.0f} | {row['p99_ms']:.0f} |"
        )
    print("\nThe mix, by request:\n")
    print("| request | count | errors | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [
        *result["by_kind"].items(),
        ("**all**", result | {"requests": result["requests_in_mix"]}),
    ]
    for kind, row in rows:
        print(
            f"| {kind} | {row['requests']} | {row['errors']} | {row['p50_ms']:.0f} "
            f"| {row['p95_ms']:.0f} | {row['p99_ms']:.0f} | {row['max_ms']:.0f} |"
        )
    for example in result["error_examples"]:
        print(f"error: {example}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20, help="of each phase")
    parser.add_argument("--quick", action="store_true", help="10 clients, 3 s a phase")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    clients, seconds = (10, 3.0) if args.quick else (args.clients, args.seconds)
    with tempfile.TemporaryDirectory(prefix="decaylab-load-") as root:
        result = run(clients, seconds, Path(root))
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 1 if result["errors"] or result["database_locked"] else 0


if __name__ == "__main__":
    sys.exit(main())
