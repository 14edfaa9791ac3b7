"""The write-up's claims re-checked: a finished sweep of weight decay 0 and 0.001 × seeds (all
else equal) against the published numbers (server/core/experiment.py), claim by claim.

Every number is read at the runs' last epoch (the write-up's epoch 50) unless the claim says
otherwise; means and 95% intervals over the seeds are the sweep statistics (sweeps.stats,
Student's t), paired differences are over runs matched by seed (sweeps.pair). A claim is a rule:

- ``within``: the interval lies inside the claimed band → holds; outside it → fails; it overlaps
  an end of the band, or there is no interval (one seed) → inconclusive.
- ``lower``/``higher``: the paired difference's interval excludes 0 on the claimed side → holds,
  on the other side → fails; it contains 0, or there is none → inconclusive.

The JSON (ReproductionOut), the Markdown (``markdown``) and the UI page are this one model."""

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from server.core import experiment as published
from server.core.errors import NotApplicable
from server.core.experiment import dataset_sizes
from server.core.schemas import (
    ClaimCheck,
    ReproductionFigure,
    ReproductionOut,
    ReproductionSetup,
    Rule,
    RunSpec,
    RunStatus,
    Verdict,
)
from server.store.models import Run, Sweep
from server.views import sweeps
from server.views.figures.draw import PERCENT_BOUNDS, cut_note

# The tolerances the claims are about (the figures' 2 × 2 grid); "small" ones are all but 0.1.
TOLERANCES = (0.0, 0.001, 0.01, 0.1)
SMALL_TOLERANCES = (0.0, 0.001, 0.01)
LAYERS = 4
# Margins of the readings: the table's numbers, printed to three digits, hold within ±10 %; the
# figures' readings ("about 7.6 %") within ±25 %; "near 0" is below 0.5 %.
TABLE_MARGIN = 0.10
FIGURE_MARGIN = 0.25
NEAR_ZERO = 0.5
# "Nearly indistinguishable": the paired difference within ±2 percentage points.
EQUIVALENCE_BAND = 2.0
# "Rising after about epoch 20" of 50: the baseline's lowest test loss falls in epochs 10..30
# (scaled to the sweep's epochs), and its last epoch's test loss is above epoch 20's.
TURN_BAND = (10, 30)
BY = ["weight_decay"]
METRIC_TEXT = {
    "train_loss": ("train loss", ""),
    "train_accuracy": ("train accuracy", "%"),
    "test_loss": ("test loss", ""),
    "test_accuracy": ("test accuracy", "%"),
}
RULES = {
    "within": "holds when the 95% interval over the seeds lies inside the claimed band, fails "
    "when it lies wholly outside it, else (it overlaps an end, or one seed gives no interval) "
    "inconclusive",
    "lower": "holds when the paired 95% interval of the difference (runs matched by seed) lies "
    "below 0, fails when it lies above 0, else (it contains 0, or one seed) inconclusive",
    "higher": "holds when the paired 95% interval of the difference lies above 0, fails when it "
    "lies below 0, else inconclusive",
    "margins": f"a number from the write-up's table holds within ±{TABLE_MARGIN:.0%} of it, a "
    f"reading off its figures within ±{FIGURE_MARGIN:.0%}, 'near 0' is below {NEAR_ZERO:g} %, "
    f"'nearly indistinguishable' is within ±{EQUIVALENCE_BAND:g} percentage points",
    "epoch": "every number is at the runs' last epoch (the write-up's epoch 50), except 'below "
    "0.001 %' (the highest over all epochs) and the test loss's turn",
}


def number(value: float | None) -> str:
    """A measured number as the Markdown and the page show it (4 significant digits)."""
    return "—" if value is None else f"{value:.4g}"


# --- the sweep's shape ---


def _other_fields(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in ("weight_decay", "seed", "name")}


def shape_problem(runs: Sequence[Run]) -> str | None:
    """Why the sweep is not the original experiment's shape (weight decay 0 and 0.001 × the same
    seeds, all else equal, the four weight matrices at the figures' tolerances), or None."""
    if not runs:
        return "the sweep has no runs"
    decays = {float(r.spec["weight_decay"]) for r in runs}
    if decays != set(published.ORIGINAL_WEIGHT_DECAYS):
        return f"its weight decays are {sorted(decays)}, not 0 and 0.001"
    if any(_other_fields(r.spec) != _other_fields(runs[0].spec) for r in runs):
        return "its runs differ in more than weight decay and seed"
    seeds = {
        wd: sorted(r.spec["seed"] for r in runs if r.spec["weight_decay"] == wd) for wd in decays
    }
    if len({tuple(s) for s in seeds.values()}) != 1 or any(
        len(set(s)) != len(s) for s in seeds.values()
    ):
        return "each weight decay needs one run per seed, the same seeds for both"
    spec = RunSpec.model_validate(runs[0].spec)
    missing = [t for t in TOLERANCES if t not in spec.tolerances]
    if missing:
        return (
            f"its runs do not measure tolerances {missing} (the write-up's figures' are 0, "
            "0.001, 0.01 and 0.1)"
        )
    if len(spec.hidden_sizes) + 1 != LAYERS:
        return f"its MLP has {len(spec.hidden_sizes) + 1} weight matrices, not the original's 4"
    return None


def _check(session: Session, sweep: Sweep) -> list[Run]:
    runs = sweeps.members(session, sweep.id)
    problem = shape_problem(runs)
    if problem:
        raise NotApplicable(
            f"sweep {sweep.id} is not the write-up's experiment (weight decay 0 and 0.001 × "
            f"seeds, all else equal): {problem}"
        )
    unfinished = [r.id for r in runs if r.status != RunStatus.succeeded]
    if unfinished:
        raise NotApplicable(
            f"sweep {sweep.id} has runs that have not succeeded ({unfinished}): the reproduction "
            "reads a finished sweep whose every run succeeded"
        )
    return runs


# --- verdicts ---


def verdict(
    rule: Rule, low: float | None, high: float | None, band: tuple[float, float]
) -> Verdict:
    """The rule (see RULES) on the interval [low, high]; no interval is inconclusive."""
    if low is None or high is None:
        return "inconclusive"
    if rule == "lower":
        return "holds" if high < 0 else "fails" if low > 0 else "inconclusive"
    if rule == "higher":
        return "holds" if low > 0 else "fails" if high < 0 else "inconclusive"
    if band[0] <= low and high <= band[1]:
        return "holds"
    return "fails" if high < band[0] or low > band[1] else "inconclusive"


def _check_claim(
    samples: np.ndarray,
    run_ids: list[int],
    rule: Rule,
    band: tuple[float, float] = (-np.inf, np.inf),
    **text: str,
) -> ClaimCheck:
    """``samples``: one number per seed (or pair of runs)."""
    s = sweeps.stats(np.asarray(samples, dtype=float).reshape(-1, 1))
    low = None if s.low is None else float(s.low[0])
    high = None if s.high is None else float(s.high[0])
    return ClaimCheck(
        rule=rule,
        band_low=float(band[0]) if rule == "within" and np.isfinite(band[0]) else None,
        band_high=float(band[1]) if rule == "within" and np.isfinite(band[1]) else None,
        run_ids=run_ids,
        n=int(samples.shape[0]),
        mean=float(s.mean[0]),
        ci_low=low,
        ci_high=high,
        verdict=verdict(rule, low, high, band),
        **text,
    )


def _about(value: float, margin: float) -> tuple[float, float]:
    return value * (1 - margin), value * (1 + margin)


# --- the report ---


def _setup(runs: Sequence[Run]) -> ReproductionSetup:
    spec = RunSpec.model_validate(runs[0].spec)
    train, test = dataset_sizes(spec.dataset, spec.train_size, spec.test_size)
    full = published.DATASET_SIZES[published.ORIGINAL_DATASET]
    deviations = []
    if spec.dataset != published.ORIGINAL_DATASET:
        deviations.append(f"data set {spec.dataset}, a stand-in for CIFAR-10")
    if (train, test) != full:
        deviations.append(
            f"{train:,} training and {test:,} test samples, not {full[0]:,}/{full[1]:,}"
        )
    if spec.epochs != published.ORIGINAL_EPOCHS:
        deviations.append(f"{spec.epochs} epochs, not {published.ORIGINAL_EPOCHS}")
    if spec.hidden_sizes != published.ORIGINAL_HIDDEN_SIZES:
        deviations.append(
            f"hidden sizes {spec.hidden_sizes}, not {published.ORIGINAL_HIDDEN_SIZES}"
        )
    defaults = RunSpec()
    for field in ("learning_rate", "momentum", "batch_size", "optimizer", "basis"):
        if getattr(spec, field) != getattr(defaults, field):
            deviations.append(f"{field} {getattr(spec, field)}, not {getattr(defaults, field)}")
    precision = sorted(
        {
            f"float32 on {n.get('device')} (matmul precision {n.get('float32_matmul_precision')}, "
            f"torch {n.get('torch')})"
            for r in runs
            if (n := r.numerics)
        }
    )
    return ReproductionSetup(
        dataset=spec.dataset,
        train_size=train,
        test_size=test,
        epochs=spec.epochs,
        seeds=sorted({r.spec["seed"] for r in runs}),
        hidden_sizes=spec.hidden_sizes,
        basis=spec.basis,
        precision=precision,
        deviations=deviations,
        stand_in=spec.dataset != published.ORIGINAL_DATASET or (train, test) != full,
    )


def _caveat(setup: ReproductionSetup) -> str:
    if setup.stand_in:
        return (
            f"These verdicts are on {setup.dataset} ({setup.train_size:,}/{setup.test_size:,} "
            "samples), a stand-in: they check the product and the method, and are not verdicts on "
            "the write-up's CIFAR-10 claims."
        )
    if setup.deviations:
        return "These verdicts are on CIFAR-10 but not on the original set-up: " + "; ".join(
            setup.deviations
        )
    return "These verdicts are on the original experiment's set-up, over several seeds."


def figures(sweep_id: int) -> list[ReproductionFigure]:
    base = f"/sweeps/{sweep_id}"
    interval = "mean over seeds with its 95% interval"
    return [
        ReproductionFigure(
            file="constancy-all.png",
            caption=f"% of weights constant, mean of all layers, per tolerance: {interval}",
            url=f"{base}/constancy?scope=all&format=png",
        ),
        ReproductionFigure(
            file="constancy-last2.png",
            caption=f"% of weights constant, mean of the last two layers: {interval}",
            url=f"{base}/constancy?scope=last2&format=png",
        ),
        ReproductionFigure(
            file="summary-layers.png",
            caption="Each layer at the last epoch, without and with decay, per tolerance",
            url=f"{base}/summary?scope=layers&format=png",
        ),
        ReproductionFigure(
            file="loss.png",
            caption=f"Train and test loss: {interval}",
            url=f"{base}/metrics?metric=loss&format=png",
        ),
        ReproductionFigure(
            file="accuracy.png",
            caption=f"Train and test accuracy: {interval}",
            url=f"{base}/metrics?metric=accuracy&format=png",
        ),
    ]


def reproduction(session: Session, sweep: Sweep) -> ReproductionOut:
    """Every claim of the write-up checked on ``sweep`` (409 when it does not fit)."""
    runs = _check(session, sweep)
    measured = sweeps.measure(session, sweep, BY)
    index = {float(g.values["weight_decay"]): g.index for g in measured.groups}
    none, decay = (index[wd] for wd in published.ORIGINAL_WEIGHT_DECAYS)
    epochs = len(measured.epochs(none))
    last = slice(epochs - 1, epochs)
    ids = {g: [p.run.row.id for p in measured.data[g]] for g in (none, decay)}

    def at_last(g: int, tol: float, scope: sweeps.Scope) -> np.ndarray:
        return measured.samples(g, tol, scope)[:, last]

    def paired(tol: float, scope: sweeps.Scope) -> tuple[np.ndarray, list[int]]:
        """Decay minus no decay at the last epoch, matched by seed."""
        pairs, xa, xb = sweeps.pair(
            measured, none, decay, BY, at_last(none, tol, scope), at_last(decay, tol, scope)
        )
        return (xb - xa)[:, 0], [i for p in pairs for i in p]

    claims: list[ClaimCheck] = []
    # The table: epoch-50 losses and accuracies.
    per_run = sweeps.run_metrics(session, runs)
    for wd, g in ((0.0, none), (0.001, decay)):
        for i, metric in enumerate(sweeps.METRICS):
            name, unit = METRIC_TEXT[metric]
            scale = 100.0 if unit == "%" else 1.0
            value = published.PUBLISHED_METRICS[wd][metric] * scale
            samples = np.array([per_run[r][epochs - 1][i] * scale for r in ids[g]])
            claims.append(
                _check_claim(
                    samples,
                    ids[g],
                    "within",
                    _about(value, TABLE_MARGIN),
                    id=f"metrics.wd{wd:g}.{metric}",
                    section="The table: losses and accuracies at epoch 50",
                    claim=f"weight decay {wd:g}, epoch 50: {name} {value:g}{unit}",
                    measure=f"{name} at epoch {epochs}, weight decay {wd:g}",
                    unit=unit,
                    published=f"{value:g}{unit}",
                )
            )
    # The baseline's test loss turns after about epoch 20.
    turn = max(1, round(epochs * published.PUBLISHED_TEST_LOSS_TURN / published.ORIGINAL_EPOCHS))
    scaled = tuple(epochs * e / published.ORIGINAL_EPOCHS for e in TURN_BAND)
    test_loss = np.array(
        [[e[sweeps.METRICS.index("test_loss")] for e in per_run[r]] for r in ids[none]]
    )
    section = "The baseline's test loss rises after about epoch 20"
    claim = "without decay, test loss starts rising after about epoch 20 (of 50)"
    claims.append(
        _check_claim(
            test_loss[:, :epochs].argmin(axis=1) + 1.0,
            ids[none],
            "within",
            scaled,
            id="test_loss.turn",
            section=section,
            claim=claim,
            measure=f"the epoch of the lowest test loss, weight decay 0 (of {epochs})",
            unit="epoch",
            published=f"about epoch 20 of 50: epochs {scaled[0]:g}–{scaled[1]:g} of {epochs}",
        )
    )
    claims.append(
        _check_claim(
            test_loss[:, epochs - 1] - test_loss[:, turn - 1],
            ids[none],
            "higher",
            id="test_loss.rise",
            section=section,
            claim=claim,
            measure=f"test loss at epoch {epochs} minus at epoch {turn}, weight decay 0",
            unit="",
            published="rising: above 0",
        )
    )
    # Tolerance 0 without decay, per layer.
    for layer, value in enumerate(published.PUBLISHED_TOL0_PERCENT):
        band = _about(value, FIGURE_MARGIN) if value else (0.0, NEAR_ZERO)
        claims.append(
            _check_claim(
                at_last(none, 0.0, layer)[:, 0],
                ids[none],
                "within",
                band,
                id=f"tol0.layer{layer}",
                section="Without decay, tolerance 0: each layer",
                claim=f"layer {layer} "
                + (f"climbs to about {value:g} %" if value else "stays near 0"),
                measure=f"% of layer {layer}'s weights unchanged at epoch {epochs}, weight decay 0",
                unit="%",
                published=f"about {value:g} %" if value else "near 0",
            )
        )
    low, high = published.PUBLISHED_TOL01_RANGE
    for layer in range(LAYERS):
        claims.append(
            _check_claim(
                at_last(none, 0.1, layer)[:, 0],
                ids[none],
                "within",
                (low, high),
                id=f"tol0.1.layer{layer}",
                section="Without decay, tolerance 0.1: roughly 40–75 % in every layer",
                claim="roughly 40–75 % in every layer",
                measure=f"% of layer {layer}'s weights constant at tolerance 0.1, epoch {epochs}",
                unit="%",
                published=f"{low:g}–{high:g} %",
            )
        )
    below = published.PUBLISHED_DECAY_TOL0_BELOW
    for layer in range(LAYERS):
        claims.append(
            _check_claim(
                measured.samples(decay, 0.0, layer).max(axis=1),
                ids[decay],
                "within",
                (0.0, below),
                id=f"decay_tol0.layer{layer}",
                section="With decay 0.001, tolerance 0: essentially 0 (below 0.001 %)",
                claim="with decay, tolerance 0: below 0.001 %",
                measure=f"the highest % of layer {layer}'s weights unchanged over epochs "
                f"1..{epochs}, weight decay 0.001",
                unit="%",
                published=f"below {below:g} %",
            )
        )
    for tol in SMALL_TOLERANCES:
        for layer in range(LAYERS):
            diff, pair_ids = paired(tol, layer)
            claims.append(
                _check_claim(
                    diff,
                    pair_ids,
                    "lower",
                    id=f"lower.tol{tol:g}.layer{layer}",
                    section="Every layer is lower with decay at small tolerances",
                    claim="every layer is lower than without decay at small tolerances",
                    measure=f"layer {layer}, tolerance {tol:g}: % constant with decay minus "
                    f"without, epoch {epochs}",
                    unit="pp",
                    published="below 0",
                )
            )
    for tol in TOLERANCES:
        diff, pair_ids = paired(tol, "all")
        claims.append(
            _check_claim(
                diff,
                pair_ids,
                "lower",
                id=f"mean_all.tol{tol:g}",
                section="Mean of all layers: higher without decay at every tolerance",
                claim="averaged over all layers, the run without decay has more constant weights "
                "at every tolerance",
                measure=f"tolerance {tol:g}: mean of all layers with decay minus without, epoch "
                f"{epochs}",
                unit="pp",
                published="below 0",
            )
        )
    for tol in TOLERANCES:
        diff, pair_ids = paired(tol, "last2")
        claims.append(
            _check_claim(
                diff,
                pair_ids,
                "within",
                (-EQUIVALENCE_BAND, EQUIVALENCE_BAND),
                id=f"mean_last2.tol{tol:g}",
                section="Mean of the last two layers: nearly indistinguishable",
                claim="averaged over the last two layers the two runs are nearly indistinguishable",
                measure=f"tolerance {tol:g}: mean of layers 2 and 3 with decay minus without, "
                f"epoch {epochs}",
                unit="pp",
                published=f"within ±{EQUIVALENCE_BAND:g} pp",
            )
        )
    setup = _setup(runs)
    return ReproductionOut(
        sweep_id=sweep.id,
        setup=setup,
        caveat=_caveat(setup),
        rules=RULES,
        claims=claims,
        verdicts={
            v: sum(c.verdict == v for c in claims) for v in ("holds", "fails", "inconclusive")
        },
        figures=figures(sweep.id),
    )


# --- Markdown ---


# Shown under a report whose percentages' intervals are cut.
CUT_NOTE = cut_note("seeds", "the JSON gives it uncut")


def is_cut(claim: ClaimCheck) -> bool:
    """Whether a percentage's t interval reaches past 0 or 100 (its text then is cut)."""
    return (
        claim.unit == "%"
        and claim.ci_low is not None
        and claim.ci_high is not None
        and (claim.ci_low < PERCENT_BOUNDS[0] or claim.ci_high > PERCENT_BOUNDS[1])
    )


def interval_text(claim: ClaimCheck) -> str:
    """The interval as the page and the Markdown show it: a percentage's cut to 0–100 (marked
    with *), the verdict's own interval left as it is in the JSON."""
    if claim.ci_low is None or claim.ci_high is None:
        return "— (one seed)"
    if is_cut(claim):
        low, high = PERCENT_BOUNDS
        return f"[{number(max(claim.ci_low, low))}, {number(min(claim.ci_high, high))}]*"
    return f"[{number(claim.ci_low)}, {number(claim.ci_high)}]"


def markdown(report: ReproductionOut) -> str:
    """The report as Markdown: the numbers of ``report``, its figures as files beside it."""
    setup = report.setup
    lines = [
        f"# The write-up's claims re-checked: sweep {report.sweep_id}",
        "",
        f"> {report.caveat}",
        "",
        "## Set-up",
        "",
        f"- Data set: {setup.dataset}, {setup.train_size:,} training and {setup.test_size:,} "
        "test samples",
        f"- Seeds: {', '.join(map(str, setup.seeds))} ({len(setup.seeds)} per weight decay); "
        f"{setup.epochs} epochs; hidden sizes {', '.join(map(str, setup.hidden_sizes))}; "
        f"basis {setup.basis}",
        f"- Precision: {'; '.join(setup.precision) or 'not recorded'}",
        f"- Differs from the original: {'; '.join(setup.deviations) or 'nothing'}",
        "",
        "## Verdicts",
        "",
        ", ".join(f"{count} {v}" for v, count in report.verdicts.items()),
        "",
        "Rules:",
        "",
        *(f"- **{name}**: {text}" for name, text in report.rules.items()),
    ]
    section = None
    for claim in report.claims:
        if claim.section != section:
            section = claim.section
            lines += [
                "",
                f"### {section}",
                "",
                "| measured | unit | published | mean | 95% interval | n | verdict |",
                "|---|---|---|---|---|---|---|",
            ]
        lines.append(
            f"| {claim.measure} | {claim.unit} | {claim.published} | {number(claim.mean)} | "
            f"{interval_text(claim)} | {claim.n} | **{claim.verdict}** |"
        )
    if any(is_cut(claim) for claim in report.claims):
        lines += ["", CUT_NOTE]
    lines += ["", "## Figures", ""]
    for figure in report.figures:
        lines += [f"![{figure.caption}]({figure.file})", "", f"*{figure.caption}*", ""]
    return "\n".join(lines)
