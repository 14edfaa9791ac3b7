"""Why weights stay constant: the dead-unit and spectrum views, from the stored exact counts.

- ``units``: per hidden layer, the units whose ReLU never fired for a training sample of an
  epoch; per weight matrix, its weights exactly unchanged from epoch e-1 to e and how many of
  those lie in a dead unit's incoming row or outgoing column (the mechanism's share).
- ``spectrum``: the % of each layer's weights constant at every tolerance of the ladder all runs
  share (server.experiment.SPECTRUM_TOLERANCES), with the run's basis.

Runs trained before decaylab measured these have no ``run_mechanism`` row: their views are
NotComputed (404) saying so. A run not yet started answers empty views.
"""

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.analysis import with_layers
from server.errors import NotComputed
from server.experiment import SPECTRUM_TOLERANCES
from server.models import (
    DeadUnits,
    ExplainedCount,
    Run,
    RunMechanism,
    SpectrumCount,
    unpack_units,
)
from server.schemas import (
    CompareSpectrumOut,
    CompareSpectrumRun,
    HiddenUnits,
    LayerSpectrum,
    RunSpec,
    SpectrumOut,
    UnitsOut,
    WeightUnits,
)


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
    session: Session, run_ids: Sequence[int], tolerance_index: int | None = None
) -> dict[int, tuple[list[int], dict[int, list[list[int]]]]]:
    """Per run: its epochs and counts[layer index][epoch position][tolerance position], in one
    query (only ``tolerance_index`` when given)."""
    query = select(
        SpectrumCount.run_id,
        SpectrumCount.epoch,
        SpectrumCount.layer_index,
        SpectrumCount.count,
    ).where(SpectrumCount.run_id.in_(run_ids))
    if tolerance_index is not None:
        query = query.where(SpectrumCount.tolerance_index == tolerance_index)
    rows = session.execute(
        query.order_by(
            SpectrumCount.run_id,
            SpectrumCount.epoch,
            SpectrumCount.layer_index,
            SpectrumCount.tolerance_index,
        )
    )
    found: dict[int, tuple[list[int], dict[int, list[list[int]]]]] = {
        i: ([], defaultdict(list)) for i in run_ids
    }
    last: dict[tuple[int, int], int] = {}
    for run_id, epoch, layer, count in rows:
        epochs, counts = found[run_id]
        if not epochs or epochs[-1] != epoch:
            epochs.append(epoch)
        if last.get((run_id, layer)) != epoch:
            last[(run_id, layer)] = epoch
            counts[layer].append([])
        counts[layer][-1].append(count)
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
    counts = spectrum_counts(session, [r.id for r in runs])
    views = []
    for run in measured:
        epochs, per_layer = counts[run.row.id]
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
                        percent=[
                            [100.0 * c / la.parameters for c in per_epoch]
                            for per_epoch in per_layer[la.index]
                        ],
                    )
                    for la in run.layers
                ],
            )
        )
    return views


def spectrum(session: Session, run: Run) -> SpectrumOut:
    return spectra(session, [run])[0]


def compare_spectrum(session: Session, runs: Sequence[Run]) -> CompareSpectrumOut:
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
