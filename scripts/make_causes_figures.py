"""The causes of exact constancy, via the API: the seed's pair in float32 and float64, and a
weight-decay dose-response between 0 and 1e-4 around the edge where exact constancy ends.

Like scripts/make_figures.py (whose helpers it uses: local service, --url, sizes), it trains on
the synthetic dataset with the seed's network and optimizer and writes into docs/img/:

    causes_wd0_float32.png, causes_wd0_float64.png,      GET /runs/{id}/causes?format=png
    causes_wd0.001_float32.png
    causes_dose_response.png                             % exactly constant (last epoch, all
                                                         weights) by cause against weight decay,
                                                         with the edge the ulp of float32 predicts

and prints the numbers docs/causes.md quotes.
"""

import math
import sys
from pathlib import Path
from typing import Any

import make_figures as base
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Between 0 and 1e-4, dense around the predicted edge (see edge()).
DOSES = (0.0, 1e-7, 2e-7, 3e-7, 4e-7, 5e-7, 7e-7, 1e-6, 1e-5, 1e-4)
PAIR = (0.0, 0.001)


def edge(spec: dict[str, Any]) -> tuple[float, float]:
    """The weight decays between which exactly constant weights disappear.

    A weight that gets no loss gradient still gets decay: SGD's momentum buffer settles at
    v = wd·w / (1 - momentum), so every step moves the weight by lr·wd·w / (1 - momentum), a
    relative change of r = lr·wd / (1 - momentum). Float32 rounds the step away when it is
    below half an ulp of w, a relative 2^-24 / (1 + f) for w = 2^e·(1 + f), 0 <= f < 1: every
    such weight stays put while r < 2^-25, none once r >= 2^-24."""
    scale = (1 - spec["momentum"]) / spec["learning_rate"]
    return 2.0**-25 * scale, 2.0**-24 * scale


def train(url: str, spec: dict[str, Any], runs: list[dict[str, Any]], timeout: float) -> list[int]:
    ids = []
    for changes in runs:
        body = spec | changes
        body["name"] = f"wd {body['weight_decay']:g} {body.get('dtype', 'float32')}"
        ids.append(base.get_json(f"{url}/runs", body)["id"])
        base.say(f"submitted run {ids[-1]} ({body['name']})")
    base._wait_for(url, ids, timeout)
    return ids


def totals(causes: dict[str, Any], epoch: int = -1) -> dict[str, float]:
    """% of all weight matrices' weights, at ``epoch``, by cause; and each cause's share of the
    constant weights over all epochs."""
    weights = causes["weights"]
    n = sum(w["parameters"] for w in weights)

    def at(field: str) -> int:
        return sum(w[field][epoch] for w in weights) if causes["epochs"] else 0

    def over(field: str) -> int:
        return sum(sum(w[field]) for w in weights)

    constant = over("constant")
    share = {f"share_{f}": 100 * over(f) / constant if constant else math.nan for f in FIELDS}
    dead = over("in_dead_unit")
    share["share_dead_pairs"] = 100 * (over("no_gradient") - dead) / constant if constant else 0
    return {f: 100 * at(f) / n for f in ("constant", *FIELDS)} | share


FIELDS = ("no_gradient", "in_dead_unit", "rounded")


def report(label: str, causes: dict[str, Any]) -> dict[str, float]:
    t = totals(causes)
    print(
        f"{label:24s} last epoch: {t['constant']:7.3f} % constant = {t['no_gradient']:7.3f} %"
        f" no gradient ({t['in_dead_unit']:.3f} % in dead units) + {t['rounded']:7.4f} % rounded;"
        f" all epochs: dead units {t['share_in_dead_unit']:.1f} %, dead pairs"
        f" {t['share_dead_pairs']:.1f} %, rounded {t['share_rounded']:.1f} % of the constant"
    )
    for w in causes["weights"]:
        n = w["parameters"]
        print(
            f"    layer {w['layer']}: constant {100 * w['constant'][-1] / n:.3f} %, no gradient"
            f" {100 * w['no_gradient'][-1] / n:.3f} %, in dead units"
            f" {100 * w['in_dead_unit'][-1] / n:.3f} %, rounded {100 * w['rounded'][-1] / n:.4f} %"
        )
    return t


def draw_dose_response(
    doses: list[float], rows: list[dict[str, float]], band: tuple[float, float], target: Path
) -> None:
    fig = Figure(figsize=(8, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    # Weight decay 0 sits one decade left of the smallest dose (a log axis has no 0).
    floor = min(d for d in doses if d > 0) / 10
    x = [d if d > 0 else floor for d in doses]
    for field, label, style in (
        ("constant", "exactly constant (all weight matrices)", "o-"),
        ("no_gradient", "… no gradient all epoch", "s--"),
        ("rounded", "… got a gradient, rounded away", "^:"),
    ):
        ax.plot(x, [r[field] for r in rows], style, label=label)
    ax.axvspan(*band, color="grey", alpha=0.25, label="predicted edge: lr·wd/(1-m) = 2^-25..2^-24")
    ax.set_xscale("log")
    ax.set_xticks([floor, *[d for d in doses if d > 0 and math.log10(d).is_integer()]])
    ax.set_xticklabels(["0", *[f"{d:g}" for d in doses if d > 0 and math.log10(d).is_integer()]])
    ax.set_xlabel("weight decay (coupled, SGD lr 0.01, momentum 0.9)")
    ax.set_ylabel("% of weights, last epoch")
    ax.set_title("Exact constancy against weight decay, float32: where it disappears")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.savefig(target, format="png")
    base.say(f"wrote {target}")


def make_causes_figures(url: str, out: Path, spec: dict[str, Any], timeout: float) -> None:
    spec = spec | {"learning_rate": 0.01, "momentum": 0.9, "causes": True}
    out.mkdir(parents=True, exist_ok=True)
    pair = [{"weight_decay": d, "dtype": t} for t in ("float32", "float64") for d in PAIR]
    doses = [{"weight_decay": d} for d in DOSES if d not in PAIR]
    ids = train(url, spec, pair + doses, timeout)
    views = {i: base.get_json(f"{url}/runs/{i}/causes") for i in ids}
    print("\nThe seed's pair (tolerance 0):")
    for run_id, changes in zip(ids, pair, strict=False):
        label = f"wd {changes['weight_decay']:g} {changes['dtype']}"
        report(label, views[run_id])
        if not (changes["dtype"] == "float64" and changes["weight_decay"] > 0):
            target = out / f"causes_wd{changes['weight_decay']:g}_{changes['dtype']}.png"
            base.download(url, f"/runs/{run_id}/causes", {}, target)
    by_dose = {0.0: ids[0], 0.001: ids[1]} | {
        c["weight_decay"]: i for c, i in zip(doses, ids[len(pair) :], strict=True)
    }
    low, high = edge(spec)
    print(f"\nDose-response, float32 (predicted edge: wd between {low:.3g} and {high:.3g}):")
    rows = [report(f"wd {d:g}", views[by_dose[d]]) for d in DOSES]
    draw_dose_response(list(DOSES), rows, (low, high), out / "causes_dose_response.png")


if __name__ == "__main__":
    sys.exit(
        base.main(make=make_causes_figures, doc=__doc__, epochs=6, train_size=1280, test_size=256)
    )
