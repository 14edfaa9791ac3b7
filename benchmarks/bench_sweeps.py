"""What the sweep views cost at 256 members × 50 epochs × 32 tolerances (the seed's 4 layers).

One finished sweep (weight decay ×4 by seed ×64 = 256 runs) is stored straight into a fresh
SQLite file as workers would leave it (bench_compare.store_runs writes the runs) and every
sweep view is read through the app in-process (TestClient: routing, validation, the queries,
the statistics, serialisation). JSON has no cache: the median of the repeats; a PNG is drawn by a
fresh renderer each time (cold), and then served from its cache (warm).

    python benchmarks/bench_sweeps.py            # 7 repeats per view
    python benchmarks/bench_sweeps.py --quick    # 3 (what `make bench` runs)
"""

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

from bench_compare import TOLERANCES, store_runs, timed
from fastapi.testclient import TestClient
from sqlalchemy import update

from server.api.app import create_app
from server.core.settings import Settings
from server.store.db import Database
from server.store.models import Run, Sweep

MEMBERS = 256
WEIGHT_DECAYS = [0.0, 1e-4, 1e-3, 1e-2]
SEEDS = MEMBERS // len(WEIGHT_DECAYS)

VIEWS = {
    "constancy, one tolerance": ("constancy", {"tol": 0.0}),
    "constancy, all 32 tolerances": ("constancy", {}),
    "constancy, layer 1, all tolerances": ("constancy", {"scope": 1}),
    "metrics": ("metrics", {}),
    "summary (dose-response), means, 32 tolerances": ("summary", {"scope": "means"}),
    "summary, layers, one tolerance": ("summary", {"scope": "layers", "tol": 0.0}),
    "difference, paired by seed": ("difference", {"a": 0, "b": 2, "tol": 0.0, "method": "paired"}),
}


def store_sweep(db: Database, rng: random.Random) -> int:
    """A sweep whose members are 256 stored runs, weight decay varying slowest as in a grid."""
    ids = store_runs(db, MEMBERS, TOLERANCES[32], rng)
    with db.write() as session:
        sweep = Sweep(
            name="bench",
            base={"dataset": "synthetic", "epochs": 50},
            grid={"weight_decay": WEIGHT_DECAYS, "seed": list(range(SEEDS))},
            priority=0,
        )
        session.add(sweep)
        session.flush()
        for i, run_id in enumerate(ids):
            spec = {"dataset": "synthetic", "epochs": 50, "tolerances": TOLERANCES[32]}
            spec |= {"weight_decay": WEIGHT_DECAYS[i // SEEDS], "seed": i % SEEDS}
            session.execute(
                update(Run).where(Run.id == run_id).values(sweep_id=sweep.id, spec=spec)
            )
        return sweep.id


def main(repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=url, device="cpu")
        with TestClient(create_app(settings)) as client:
            db = Database(url)
            sweep_id = store_sweep(db, random.Random(0))
            db.dispose()
            for name, (view, params) in VIEWS.items():
                path = f"/sweeps/{sweep_id}/{view}"
                get = lambda **more: client.get(path, params=params | more)  # noqa: E731,B023
                json_ms = statistics.median(1000 * timed(get) for _ in range(repeats))
                renderer = client.app.state.renderer
                cold = []
                for _ in range(max(1, repeats // 2)):
                    client.app.state.renderer = type(renderer)()
                    cold.append(1000 * timed(lambda: get(format="png")))  # noqa: B023
                warm = statistics.median(
                    1000 * timed(lambda: get(format="png"))  # noqa: B023
                    for _ in range(repeats)
                )
                client.app.state.renderer = renderer
                results[name] = {
                    "json_ms": json_ms,
                    "png_cold_ms": statistics.median(cold),
                    "png_warm_ms": warm,
                }
            sweep = client.get(f"/sweeps/{sweep_id}")
            results["GET /sweeps/{id} (256 runs)"] = {
                "json_ms": statistics.median(
                    1000 * timed(lambda: client.get(f"/sweeps/{sweep_id}")) for _ in range(repeats)
                )
            }
            assert len(sweep.json()["runs"]) == MEMBERS
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats per view")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = main(3 if args.quick else 7)
    head = "view (256 runs × 50 epochs × 32 tolerances)"
    print(f"| {head:<48} | JSON ms | PNG cold ms | PNG warm ms |")
    print(f"|{'-' * 50}|--------:|------------:|------------:|")
    for name, row in results.items():
        png = (
            f"{row['png_cold_ms']:11.0f} | {row['png_warm_ms']:11.1f}"
            if "png_cold_ms" in row
            else f"{'—':>11} | {'—':>11}"
        )
        print(f"| {name:<48} | {row['json_ms']:7.1f} | {png} |")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
