"""The seed's experiment as a sweep: weight decay {0, 1e-4, 1e-3, 1e-2} × 5 seeds, via the API.

Like scripts/make_figures.py (whose helpers and command line it uses: --url, --out, sizes, and
--workers, default 2 here), it starts `python -m server` and workers on a temporary data
directory (or talks to a running server with --url), submits one sweep on the synthetic dataset,
waits for its runs and downloads into docs/img/:

    sweep_constancy_all.png     % of weights constant at tol 0, mean of all layers, per weight
                                decay with its 95% interval over the seeds
    sweep_constancy_last2.png   the same, mean of the last two layers
    sweep_dose_response.png     every layer at the last epoch against weight decay (symlog x),
                                one panel per tolerance
    sweep_dose_response_means.png   the same for the all-layer and last-two means
    sweep_accuracy.png          train and test accuracy per weight decay

It prints the numbers docs/sweeps.md quotes. Defaults (8 epochs of 1,000/500
samples, 2 workers) train the 20 runs in about 5 minutes on 2 CPU cores.
"""

import sys
import time
from pathlib import Path
from typing import Any

import make_figures as base
from make_figures import download, get_json, say

WEIGHT_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)
SEEDS = (0, 1, 2, 3, 4)


def _interval(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"[{low:.4g}, {high:.4g}]"


def make_sweep_figures(url: str, out: Path, spec: dict[str, Any], timeout: float) -> None:
    body = {
        "name": "weight decay × 5 seeds",
        "base": spec,
        "grid": {"weight_decay": list(WEIGHT_DECAYS), "seed": list(SEEDS)},
    }
    started = time.monotonic()
    sweep = get_json(f"{url}/sweeps", body)
    say(f"submitted sweep {sweep['id']}: {len(sweep['runs'])} runs")
    base._wait_for(url, [r["id"] for r in sweep["runs"]], timeout)
    say(f"the sweep trained in {time.monotonic() - started:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    path = f"/sweeps/{sweep['id']}"
    for scope in ("all", "last2"):
        params = {"tol": 0, "scope": scope}
        download(url, f"{path}/constancy", params, out / f"sweep_constancy_{scope}.png")
    download(url, f"{path}/summary", {"scope": "layers"}, out / "sweep_dose_response.png")
    download(url, f"{path}/summary", {"scope": "means"}, out / "sweep_dose_response_means.png")
    download(url, f"{path}/metrics", {"metric": "accuracy"}, out / "sweep_accuracy.png")

    summary = get_json(f"{url}{path}/summary?scope=means")
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
                    f"{url}{path}/difference?a=0&b=2&tol={tol}&scope={scope}&method={method}"
                )
                print(
                    f"  wd 0.001 − wd 0, {scope:>5}, tol {tol:g}, {method:>6}, last epoch: "
                    f"{diff['difference'][-1]:.4g} "
                    f"{_interval(diff['ci_low'][-1], diff['ci_high'][-1])}"
                )
    for group in get_json(f"{url}{path}/metrics")["groups"]:
        acc = group["test_accuracy"]
        print(
            f"  wd {group['values']['weight_decay']:g}: test accuracy {100 * acc['mean'][-1]:.2f}% "
            f"{_interval(100 * acc['ci_low'][-1], 100 * acc['ci_high'][-1])}"
        )


if __name__ == "__main__":
    sys.exit(
        base.main(
            make=make_sweep_figures,
            doc=__doc__,
            epochs=8,
            train_size=1_000,
            test_size=500,
            workers=2,
        )
    )
