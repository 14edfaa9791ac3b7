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
import sys
import tempfile
from pathlib import Path
from typing import Any

from figure_service import ROOT, download, get_json, local_service, say, wait_for

WEIGHT_DECAYS = (0.0, 0.001)


def make_figures(url: str, out: Path, spec: dict[str, Any], timeout: float) -> None:
    ids = []
    for decay in WEIGHT_DECAYS:
        name = "baseline" if decay == 0 else "weight decay"
        run = get_json(f"{url}/runs", {**spec, "name": name, "weight_decay": decay})
        say(f"submitted run {run['id']} ({name}, weight decay {decay:g})")
        ids.append(run["id"])
    wait_for(url, ids, timeout)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running decaylab API (default: start one with a worker)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--train-size", type=int, default=5_000)
    parser.add_argument("--test-size", type=int, default=2_000)
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
        make_figures(args.url.rstrip("/"), args.out, spec, args.timeout)
    else:
        with tempfile.TemporaryDirectory(prefix="decaylab-figures-") as data_dir:
            with local_service(Path(data_dir)) as url:
                make_figures(url, args.out, spec, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
