"""What a comparison costs as it grows: GET /compare over 1, 10 and 50 finished runs with 4 and
32 tolerances, as JSON and PNG, cold and warm, against one run's constancy at one tolerance.

Runs are stored straight into a fresh SQLite file as a worker would leave them (the seed's MLP:
4 layers, 50 epochs, exact counts) and read through the app in-process (FastAPI's TestClient:
routing, validation, the queries, serialisation; no network). JSON has no cache, so cold is the
first request and warm the median of the repeats; a cold PNG is drawn by a fresh renderer, a
warm one comes from its cache.

    python benchmarks/bench_compare.py            # 7 repeats per cell
    python benchmarks/bench_compare.py --quick    # 1 and 3 (what `make bench` runs)
"""

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import insert

from server.api.app import create_app
from server.core.settings import Settings
from server.store.db import Database
from server.store.models import EpochCounts, EpochMetrics, LayerEpochStats, Run, RunLayer

EPOCHS = 50
LAYERS = [("layers.0.weight", 3072 * 512), ("layers.1.weight", 512 * 512)]
LAYERS += [("layers.2.weight", 512 * 512), ("layers.3.weight", 512 * 10)]
RUNS = (1, 10, 50)
TOLERANCES = {4: [0.0, 0.001, 0.01, 0.1], 32: [0.0, *np.geomspace(1e-6, 1.0, 31).tolist()]}


def store_runs(db: Database, count: int, tolerances: list[float], rng: random.Random) -> list[int]:
    """``count`` finished runs with random (monotone in tol) counts; returns their ids."""
    spec = {"dataset": "synthetic", "epochs": EPOCHS, "tolerances": tolerances}
    ids = []
    with db.write() as session:
        for i in range(count):
            run = Run(
                name=f"run {i}",
                spec=spec | {"weight_decay": 0.001 * (i % 2)},
                status="succeeded",
                epochs_done=EPOCHS,
                attempts=1,
            )
            session.add(run)
            session.flush()
            ids.append(run.id)
            layer_rows = [
                {"run_id": run.id, "index": j, "name": name, "parameters": size}
                for j, (name, size) in enumerate(LAYERS)
            ]
            session.execute(insert(RunLayer), layer_rows)
            metrics, stats, counts = [], [], []
            for epoch in range(EPOCHS + 1):
                stats += [
                    {"run_id": run.id, "epoch": epoch, "layer_index": j, "variance": rng.random()}
                    for j in range(len(LAYERS))
                ]
                if epoch == 0:
                    continue
                metrics.append(
                    {
                        "run_id": run.id,
                        "epoch": epoch,
                        "train_loss": rng.random(),
                        "train_accuracy": rng.random(),
                        "test_loss": rng.random(),
                        "test_accuracy": rng.random(),
                        "epoch_seconds": 1.0,
                    }
                )
                per_layer = [sorted(rng.randint(0, size) for _ in tolerances) for _, size in LAYERS]
                counts.append({"run_id": run.id, "epoch": epoch, "counts": per_layer})
            session.execute(insert(EpochMetrics), metrics)
            session.execute(insert(LayerEpochStats), stats)
            session.execute(insert(EpochCounts), counts)
    return ids


def timed(request: Callable[[], Any]) -> float:
    start = time.perf_counter()
    response = request()
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text[:500]
    return elapsed


def measure(client: TestClient, path: str, params: dict[str, Any], repeats: int) -> dict:
    """Cold and warm milliseconds of a JSON and a PNG GET."""
    get = lambda **more: client.get(path, params=params | more)  # noqa: E731
    json_cold = timed(get)
    json_warm = statistics.median(timed(get) for _ in range(repeats))
    renderer = client.app.state.renderer
    png_cold = []
    for _ in range(max(1, repeats // 3)):
        client.app.state.renderer = type(renderer)()
        png_cold.append(timed(lambda: get(format="png", width=800, height=600)))
    png_warm = statistics.median(
        timed(lambda: get(format="png", width=800, height=600)) for _ in range(repeats)
    )
    client.app.state.renderer = renderer
    return {
        "json_cold_ms": 1000 * json_cold,
        "json_warm_ms": 1000 * json_warm,
        "png_cold_ms": 1000 * statistics.median(png_cold),
        "png_warm_ms": 1000 * png_warm,
    }


def main(repeats: int) -> dict[str, dict]:
    rng = random.Random(0)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=url, device="cpu")
        with TestClient(create_app(settings)) as client:
            db = Database(url)
            runs = {
                n_tol: store_runs(db, max(RUNS), tols, rng) for n_tol, tols in TOLERANCES.items()
            }
            one = runs[4][0]
            results["one run, constancy at one tolerance"] = measure(
                client, f"/runs/{one}/constancy", {"tol": 0.0}, repeats
            )
            for n_tol, ids in runs.items():
                for n in RUNS:
                    chosen = ",".join(map(str, ids[:n]))
                    results[f"compare {n} runs × {n_tol} tolerances"] = measure(
                        client, "/compare", {"runs": chosen}, repeats
                    )
            db.dispose()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats per cell")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = main(3 if args.quick else 7)
    base = results["one run, constancy at one tolerance"]["json_warm_ms"]
    print(f"| {'view':<38} | JSON cold | JSON warm | × one view | PNG cold | PNG warm |")
    print(f"|{'-' * 40}|----------:|----------:|-----------:|---------:|---------:|")
    for name, row in results.items():
        print(
            f"| {name:<38} | {row['json_cold_ms']:6.1f} ms | {row['json_warm_ms']:6.1f} ms"
            f" | {row['json_warm_ms'] / base:9.1f}× | {row['png_cold_ms']:5.0f} ms"
            f" | {row['png_warm_ms']:5.1f} ms |"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
