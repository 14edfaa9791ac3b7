"""Server-side time of the browser UI's pages with 1,000 runs in the database.

The database (SQLite, a temp file) is filled directly with SQLAlchemy: 1,000 finished runs of
the seed's shape (4 layers × 50 epochs × 4 tolerances: metrics, weight variances and constancy
counts), with weight decays and names that vary. Each page is then requested through
TestClient (HTML rendered, no browser, no figure drawn: figures are separate PNG requests,
measured by bench_figures.py) and the median and 95th percentile are printed.

    python benchmarks/bench_pages.py            # 1,000 runs, 200 requests per page
    python benchmarks/bench_pages.py --quick    # 200 runs, 20 requests (what `make bench` runs)
"""

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import insert

from server.api.app import create_app
from server.core.schemas import RunSpec, RunStatus
from server.core.settings import Settings
from server.store.models import EpochCounts, EpochMetrics, LayerEpochStats, Run, RunLayer, utcnow

LAYERS = [("layers.0.weight", 3072 * 512), ("layers.1.weight", 512 * 512)]
LAYERS += [("layers.2.weight", 512 * 512), ("layers.3.weight", 512 * 10)]
EPOCHS = 50
DECAYS = (0.0, 0.0001, 0.001, 0.01)


def fill(settings: Settings, runs: int) -> None:
    """``runs`` finished runs with every epoch's results, written in bulk."""
    rng = random.Random(0)
    app = create_app(settings)  # brings the schema to head
    database = app.state.database
    now = utcnow()
    with database.write() as session:
        for first in range(1, runs + 1, 100):
            batch = range(first, min(first + 100, runs + 1))
            specs = [
                RunSpec(
                    name=f"sweep {i % 37}", weight_decay=DECAYS[i % 4], seed=i // 4, epochs=EPOCHS
                )
                for i in batch
            ]
            session.execute(
                insert(Run),
                [
                    {"id": i, "name": spec.name, "spec": spec.model_dump(mode="json"),
                     "status": RunStatus.succeeded.value, "epochs_done": EPOCHS, "created_at": now,
                     "started_at": now, "finished_at": now, "attempts": 1}
                    for i, spec in zip(batch, specs, strict=True)
                ],
            )  # fmt: skip
            session.execute(
                insert(RunLayer),
                [{"run_id": i, "index": k, "name": name, "parameters": n}
                 for i in batch for k, (name, n) in enumerate(LAYERS)],
            )  # fmt: skip
            session.execute(
                insert(EpochMetrics),
                [{"run_id": i, "epoch": e, "train_loss": rng.random(),
                  "train_accuracy": rng.random(), "test_loss": rng.random(),
                  "test_accuracy": rng.random(), "epoch_seconds": 7.0}
                 for i in batch for e in range(1, EPOCHS + 1)],
            )  # fmt: skip
            session.execute(
                insert(LayerEpochStats),
                [{"run_id": i, "epoch": e, "layer_index": k, "variance": rng.random() / 100}
                 for i in batch for e in range(EPOCHS + 1) for k in range(len(LAYERS))],
            )  # fmt: skip
            session.execute(
                insert(EpochCounts),
                [{"run_id": i, "epoch": e,
                  "counts": [sorted(rng.randrange(n) for _ in range(4)) for _, n in LAYERS]}
                 for i in batch for e in range(1, EPOCHS + 1)],
            )  # fmt: skip
    database.dispose()


def measure(client: TestClient, path: str, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile in ms of ``repeats`` GETs of ``path`` (after one warm-up)."""
    assert client.get(path).status_code == 200, path
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code in (200, 304), path
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="200 runs, 20 requests per page")
    args = parser.parse_args()
    runs, repeats = (200, 20) if args.quick else (args.runs, args.repeats)
    with tempfile.TemporaryDirectory(prefix="decaylab-bench-pages-") as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        start = time.perf_counter()
        fill(settings, runs)
        print(f"{runs:,} runs of {EPOCHS} epochs stored in {time.perf_counter() - start:.1f} s")
        middle = runs // 2
        pages = {
            "runs list, first page (50)": "/ui/runs",
            "runs list, 200 a page, sorted by test accuracy": (
                "/ui/runs?per_page=200&sort=test_accuracy&order=desc"
            ),
            "runs list, filtered by name, page 2": "/ui/runs?name=sweep%201&page=2",
            "run page": f"/ui/runs/{middle}",
            "run page, live part": f"/ui/runs/{middle}?part=live",
            "compare page, 2 runs": f"/ui/compare?runs={middle},{middle + 1}",
            "new-run form from a run": f"/ui/runs/new?from={middle}",
        }
        print(f"{'page':<50} {'median ms':>10} {'p95 ms':>8}")
        with TestClient(create_app(settings)) as client:
            for name, path in pages.items():
                median, p95 = measure(client, path, repeats)
                print(f"{name:<50} {median:>10.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
