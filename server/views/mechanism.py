"""Why weights stay constant: the dead-unit and spectrum views, from the stored exact counts.

- ``units``: per hidden layer, the units whose ReLU never fired for a training sample of an
  epoch; per weight matrix, its weights exactly unchanged from epoch e-1 to e and how many of
  those lie in a dead unit's incoming row or outgoing column (the mechanism's share).
- ``spectrum``: the % of each layer's weights constant at every tolerance of the ladder all runs
  share (server.core.experiment.SPECTRUM_TOLERANCES), with the run's basis.

Runs trained before decaylab measured these have no ``run_mechanism`` row: their views are
NotComputed (404) saying so. A run not yet started answers empty views.
"""

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import SessionDep
from server.api.routers.params import RunId, SpectrumRunIds
from server.core.errors import NotComputed
from server.core.experiment import SPECTRUM_TOLERANCES
from server.core.schemas import (
    CompareSpectrumOut,
    CompareSpectrumRun,
    HiddenUnits,
    LayerSpectrum,
    RunSpec,
    SpectrumOut,
    UnitsOut,
    WeightUnits,
)
from server.store import crud
from server.store.models import (
    DeadUnits,
    EpochSpectrum,
    ExplainedCount,
    Run,
    RunMechanism,
    unpack_units,
)
from server.views.analysis import with_layers
from server.views.figures.draw import (
    draw_compare_spectrum,
    draw_spectrum,
    draw_units,
    label_of_row,
)
from server.views.registry import Panel, Result, view


def ladders(session: Session, runs: Sequence[Run]) -> dict[int, list[float] | None]:
    """Each run's spectrum ladder: what it measured, the current one for a run that has not
    trained yet, None for a run trained before decaylab measured the mechanism."""
    stored = dict(
        session.execute(
            select(RunMechanism.run_id, RunMechanism.tolerances).where(
                RunMechanism.run_id.in_([r.id for r in runs])
            )
        ).all()
    )
    return {
        r.id: stored.get(r.id, list(SPECTRUM_TOLERANCES) if r.epochs_done == 0 else None)
        for r in runs
    }


def _ladder(session: Session, run: Run, what: str) -> list[float]:
    ladder = ladders(session, [run])[run.id]
    if ladder is None:
        raise NotComputed(
            f"run {run.id} has no {what}: it was trained before decaylab recorded dead units and"
            " the movement spectrum (or resumed from such a run); submit it again to see them"
        )
    return ladder


def units(session: Session, run: Run) -> UnitsOut:
    """Dead units per hidden layer and epoch; exact constancy and what dead units explain."""
    _ladder(session, run, "dead-unit counts")
    (measured,) = with_layers(session, [run])
    hidden_sizes = RunSpec.model_validate(run.spec).hidden_sizes
    dead: dict[int, list[int]] = defaultdict(list)
    dead_units: dict[int, list[list[int]]] = defaultdict(list)
    for layer, count, mask in session.execute(
        select(DeadUnits.layer_index, DeadUnits.dead, DeadUnits.units)
        .where(DeadUnits.run_id == run.id)
        .order_by(DeadUnits.epoch, DeadUnits.layer_index)
    ):
        dead[layer].append(count)
        dead_units[layer].append(unpack_units(mask))
    epochs: list[int] = []
    constant: dict[int, list[int]] = defaultdict(list)
    explained: dict[int, list[int]] = defaultdict(list)
    for epoch, layer, unchanged, in_dead in session.execute(
        select(
            ExplainedCount.epoch,
            ExplainedCount.layer_index,
            ExplainedCount.unchanged,
            ExplainedCount.explained,
        )
        .where(ExplainedCount.run_id == run.id)
        .order_by(ExplainedCount.epoch, ExplainedCount.layer_index)
    ):
        if not epochs or epochs[-1] != epoch:
            epochs.append(epoch)
        constant[layer].append(unchanged)
        explained[layer].append(in_dead)
    # The weight matrices are the first len(hidden_sizes) + 1 measured tensors, in layer order.
    weights = measured.layers[: len(hidden_sizes) + 1]
    return UnitsOut(
        run_id=run.id,
        epochs=epochs,
        hidden=[
            HiddenUnits(layer=i, units=size, dead=dead[i], dead_units=dead_units[i])
            for i, size in enumerate(hidden_sizes)
        ],
        weights=[
            WeightUnits(
                layer=la.index,
                name=la.name,
                parameters=la.parameters,
                constant=constant[la.index],
                explained=explained[la.index],
            )
            for la in weights
        ],
    )


def spectrum_counts(
    session: Session, runs: Sequence[Run], ladder_of: dict[int, list[float] | None]
) -> dict[int, tuple[list[int], np.ndarray]]:
    """Per run: its epochs and counts as an int64 array epochs × layers × ladder, all runs in
    one query."""
    rows: dict[int, tuple[list[int], list[np.ndarray]]] = {r.id: ([], []) for r in runs}
    for run_id, epoch, counts in session.execute(
        select(EpochSpectrum.run_id, EpochSpectrum.epoch, EpochSpectrum.counts)
        .where(EpochSpectrum.run_id.in_([r.id for r in runs]))
        .order_by(EpochSpectrum.run_id, EpochSpectrum.epoch)
    ):
        rows[run_id][0].append(epoch)
        rows[run_id][1].append(counts)
    found = {}
    for run_id, (epochs, per_epoch) in rows.items():
        ladder = len(ladder_of.get(run_id) or [])
        flat = np.concatenate(per_epoch) if per_epoch else np.zeros(0, dtype=np.int64)
        layers = flat.size // (len(epochs) * ladder) if epochs and ladder else 0
        found[run_id] = (epochs, flat.reshape(len(epochs), layers, ladder))
    return found


def spectra(session: Session, runs: Sequence[Run]) -> list[SpectrumOut]:
    """Each run's spectrum, read for all of them in a fixed number of queries."""
    ladder_of = ladders(session, runs)
    missing = [r.id for r in runs if ladder_of[r.id] is None]
    if missing:
        raise NotComputed(
            f"run{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} ha"
            f"{'ve' if len(missing) > 1 else 's'} no movement spectrum: trained before decaylab"
            " recorded it (or resumed from such a run); submit again to see it"
        )
    measured = with_layers(session, runs)
    counts = spectrum_counts(session, runs, ladder_of)
    views = []
    for run in measured:
        epochs, per_epoch = counts[run.row.id]
        parameters = np.array([la.parameters for la in run.layers], dtype=np.int64)
        percent = 100.0 * per_epoch / parameters[:, None] if epochs else per_epoch
        views.append(
            SpectrumOut(
                run_id=run.row.id,
                basis=run.spec.basis,
                epochs=epochs,
                tolerances=ladder_of[run.row.id] or [],
                layers=[
                    LayerSpectrum(
                        index=la.index,
                        name=la.name,
                        parameters=la.parameters,
                        percent=percent[:, i].tolist() if epochs else [],
                    )
                    for i, la in enumerate(run.layers)
                ],
            )
        )
    return views


def spectrum(session: Session, run: Run) -> SpectrumOut:
    return spectra(session, [run])[0]


def spectra_compared(session: Session, runs: Sequence[Run]) -> CompareSpectrumOut:
    return CompareSpectrumOut(
        runs=[
            CompareSpectrumRun(
                **view.model_dump(),
                name=run.name,
                weight_decay=RunSpec.model_validate(run.spec).weight_decay,
            )
            for run, view in zip(runs, spectra(session, runs), strict=True)
        ]
    )


# --- the views (server/views/registry.py) ---------------------------------------------------

NOT_MEASURED = "Unknown run, or one trained before decaylab measured the mechanism"


@view(
    "units",
    "/runs/{run_id}/units",
    subject="run",
    summary="Dead ReLU units per epoch, and how much exact constancy they explain",
    model=UnitsOut,
    draw=draw_units,
    not_found=NOT_MEASURED,
    tags=["runs"],
    panels=[
        Panel(
            "why",
            "Dead ReLU units per hidden layer, and per weight matrix the exactly constant "
            "weights and those of them in a dead unit's row or column",
        )
    ],
)
def get_units(run_id: RunId, session: SessionDep) -> Result:
    """Per hidden layer, the units whose ReLU output was 0 for every training sample of the
    epoch; per weight matrix, its weights exactly unchanged from epoch e-1 to e and how many of
    those lie in a dead unit's incoming row or outgoing column (each weight once).

    PNG: dead units per layer over the epochs, and per weight matrix the exactly constant
    weights against those dead units explain."""
    run = crud.get_run(session, run_id)
    return Result(units(session, run), (label_of_row(run),))


@view(
    "spectrum",
    "/runs/{run_id}/spectrum",
    subject="run",
    summary="% of each layer's weights constant at every tolerance of the shared ladder",
    model=SpectrumOut,
    draw=draw_spectrum,
    not_found=NOT_MEASURED,
    tags=["runs"],
    panels=[
        Panel(
            "why",
            "Movement spectrum: % of each layer's weights constant between epochs at every "
            "tolerance of the shared ladder (epoch × tolerance)",
        )
    ],
)
def get_spectrum(run_id: RunId, session: SessionDep) -> Result:
    """The movement spectrum: constancy from epoch e-1 to e at 0 and at log-spaced tolerances
    from 1e-7 to 1 (the same ladder for every run), with the run's basis.

    PNG: a heatmap per layer, epoch × tolerance (log axis), colour = % constant."""
    run = crud.get_run(session, run_id)
    return Result(spectrum(session, run), (label_of_row(run),))


@view(
    "compare_spectrum",
    "/compare/spectrum",
    subject="runs",
    summary="Runs' movement spectra side by side",
    model=CompareSpectrumOut,
    draw=draw_compare_spectrum,
    not_found=NOT_MEASURED,
    tags=["compare"],
    panels=[
        Panel(
            "compare",
            "Movement spectra: % of each layer's weights constant between epochs at every "
            "tolerance of the shared ladder, a row of heatmaps per run on one colour scale",
        )
    ],
)
def compare_spectrum(session: SessionDep, runs: SpectrumRunIds) -> Result:
    """Each run's spectrum, in the order of ``runs``.

    PNG: one row of heatmaps per run (a panel per layer), on one colour scale."""
    return Result(spectra_compared(session, crud.get_runs(session, runs)))
