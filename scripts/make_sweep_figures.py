"""The seed's experiment as a sweep: weight decay {0, 1e-4, 1e-3, 1e-2} × 5 seeds, via the API.

Starts `python -m server` and `python -m worker` (``--workers`` of them) on a temporary data
directory (or talks to a running server with --url), submits one sweep on the synthetic dataset,
waits for its runs and downloads into docs/img/:

    sweep_constancy_all.png     % of weights constant at tol 0, mean of all layers, per weight
                                decay with its 95% interval over the seeds
    sweep_constancy_last2.png   the same, mean of the last two layers
    sweep_dose_response.png     every layer at the last epoch against weight decay (symlog x),
                                one panel per tolerance
    sweep_dose_response_means.png   the same for the all-layer and last-two means
    sweep_accuracy.png          train and test accuracy per weight decay

It prints the numbers the README quotes (and writes every view's JSON with --json).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from figure_service import ROOT, download, get_json, local_service, say, wait_for

WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)
SEEDS = (0, 1, 2, 3, 4)


def _interval(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"[{low:.4g}, {high:.4g}]"


def make_sweep_figures(
    url: str, out: Path, spec: dict[str, Any], timeout: float, json_out: Path | None
) -> None:
    body = {
        "name": "weight decay × 5 seeds",
        "base": spec,
        "grid": {"weight_decay": list(WEIGHT_DECAYS), "seed": list(SEEDS)},
    }
    started = time.monotonic()
    sweep = get_json(f"{url}/sweeps", body)
    say(f"submitted sweep {sweep['id']}: {len(sweep['runs'])} runs")
    wait_for(url, [r["id"] for r in sweep["runs"]], timeout)
    say(f"the sweep trained in {time.monotonic() - started:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    base = f"/sweeps/{sweep['id']}"
    for scope in ("all", "last2"):
        params = {"tol": 0, "scope": scope}
        download(url, f"{base}/constancy", params, out / f"sweep_constancy_{scope}.png")
    download(url, f"{base}/summary", {"scope": "layers"}, out / "sweep_dose_response.png")
    download(url, f"{base}/summary", {"scope": "means"}, out / "sweep_dose_response_means.png")
    download(url, f"{base}/metrics", {"metric": "accuracy"}, out / "sweep_accuracy.png")

    views: dict[str, Any] = {
        "sweep": get_json(f"{url}{base}"),
        "summary_means": get_json(f"{url}{base}/summary?scope=means"),
        "summary_layers": get_json(f"{url}{base}/summary?scope=layers"),
        "metrics": get_json(f"{url}{base}/metrics"),
    }
    summary = views["summary_means"]
    print(f"epoch {summary['epoch']}: % of weights constant, mean over 5 seeds [95% interval]")
    for result in summary["results"]:
        for line in result["lines"]:
            cells = [
                f"wd {p['values']['weight_decay']:g}: {p['mean']:.4g} "
                f"{_interval(p['ci_low'], p['ci_high'])}"
                for p in line["points"]
            ]
            print(f"  tol {result['tolerance']:g} {line['scope']:>5}: " + "; ".join(cells))
    # The seed's pair, 0 vs 0.001 (groups 0 and 2): does the last-two near-equality hold?
    for scope in ("all", "last2"):
        for tol in summary["tolerances"]:
            for method in ("welch", "paired"):
                diff = get_json(
                    f"{url}{base}/difference?a=0&b=2&tol={tol}&scope={scope}&method={method}"
                )
                views[f"difference_{scope}_{tol:g}_{method}"] = diff
                print(
                    f"  wd 0.001 − wd 0, {scope:>5}, tol {tol:g}, {method:>6}, last epoch: "
                    f"{diff['difference'][-1]:.4g} "
                    f"{_interval(diff['ci_low'][-1], diff['ci_high'][-1])}"
                )
    for group in views["metrics"]["groups"]:
        acc = group["test_accuracy"]
        print(
            f"  wd {group['values']['weight_decay']:g}: test accuracy {100 * acc['mean'][-1]:.2f}% "
            f"{_interval(100 * acc['ci_low'][-1], 100 * acc['ci_high'][-1])}"
        )
    if json_out:
        json_out.write_text(json.dumps(views, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running decaylab API (default: start one with workers)")
    parser.add_argument("--workers", type=int, default=1, help="workers to start (no --url)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--train-size", type=int, default=5_000)
    parser.add_argument("--test-size", type=int, default=1_000)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the runs")
    parser.add_argument("--json", type=Path, help="also write every view's JSON here")
    args = parser.parse_args(argv)
    spec = {
        "dataset": "synthetic",
        "epochs": args.epochs,
        "train_size": args.train_size,
        "test_size": args.test_size,
    }
    if args.url:
        make_sweep_figures(args.url.rstrip("/"), args.out, spec, args.timeout, args.json)
    else:
        with tempfile.TemporaryDirectory(prefix="decaylab-sweep-") as data_dir:
            with local_service(Path(data_dir), workers=args.workers) as url:
                make_sweep_figures(url, args.out, spec, args.timeout, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
