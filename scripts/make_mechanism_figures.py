"""The mechanism's figures for the seed's pair of runs (weight decay 0 and 0.001), via the API.

Like scripts/make_figures.py (whose helpers it uses: the same runs, sizes, local service and
--url), it trains the pair on the synthetic dataset and downloads into docs/img/:

    units_wd0.png, units_wd0.001.png        dead units per hidden layer; exact constancy against
                                            what dead units explain, per weight matrix
    spectrum_wd0.png, spectrum_wd0.001.png  % constant per layer, epoch × tolerance (0, 1e-7..1)
    spectrum_compare.png                    the two spectra side by side

and prints the numbers docs/mechanism.md quotes (dead units, explained shares).
"""

import sys
import urllib.parse
from pathlib import Path
from typing import Any

import make_figures as base


def summary(url: str, run_id: int, decay: float) -> None:
    """Dead units per hidden layer (first, last epoch, most), and per weight matrix the exactly
    constant weights and the share of them in a dead unit's row or column."""
    units = base.get_json(f"{url}/runs/{run_id}/units")
    print(f"\nrun {run_id}, weight decay {decay:g}, epochs {units['epochs'][-1]}")
    for hidden in units["hidden"]:
        dead = hidden["dead"]
        print(
            f"  hidden layer {hidden['layer']} ({hidden['units']} units): dead at epoch 1"
            f" {dead[0]}, at the last {dead[-1]}, at most {max(dead)}"
        )
    for weight in units["weights"]:
        constant, explained, n = weight["constant"], weight["explained"], weight["parameters"]
        total = sum(constant)
        share = f"{100 * sum(explained) / total:.2f} %" if total else "n/a"
        print(
            f"  layer {weight['layer']} ({n} weights): exactly constant at the last epoch"
            f" {100 * constant[-1] / n:.3f} % (max {100 * max(constant) / n:.3f} %);"
            f" explained by dead units over all epochs {share}"
            f" ({sum(explained)} of {total})"
        )
    spectrum = base.get_json(f"{url}/runs/{run_id}/spectrum")
    last = [layer["percent"][-1] for layer in spectrum["layers"]]
    for k, tol in enumerate(spectrum["tolerances"]):
        if tol in (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0):
            row = "  ".join(f"{p[k]:6.2f}" for p in last)
            print(f"  last epoch, tol {tol:<7g} % constant per layer: {row}")


def make_mechanism_figures(url: str, out: Path, spec: dict[str, Any], timeout: float) -> None:
    ids = base.train_pair(url, spec, timeout)
    out.mkdir(parents=True, exist_ok=True)
    for run_id, decay in zip(ids, base.WEIGHT_DECAYS, strict=True):
        suffix = f"wd{decay:g}"
        base.download(url, f"/runs/{run_id}/units", {}, out / f"units_{suffix}.png")
        base.download(url, f"/runs/{run_id}/spectrum", {}, out / f"spectrum_{suffix}.png")
    runs = ",".join(map(str, ids))
    base.download(
        url, "/compare/spectrum", {"runs": runs, "height": 900}, out / "spectrum_compare.png"
    )
    for run_id, decay in zip(ids, base.WEIGHT_DECAYS, strict=True):
        summary(url, run_id, decay)
    base.say(f"compare: {url}/compare/spectrum?{urllib.parse.urlencode({'runs': runs})}")


if __name__ == "__main__":
    sys.exit(base.main(make=make_mechanism_figures, doc=__doc__))
