"""Why each exactly constant weight stayed constant: the causes view, its figure and its table.

Per weight matrix and epoch, the weights exactly unchanged from epoch e-1 to e (``constant``,
the ``constant`` of /units) split exactly into

- ``no_gradient``: their loss gradient was exactly 0 in every batch of the epoch; of these,
  ``in_dead_unit`` lie in a dead unit's incoming row or outgoing column (the ``explained`` of
  /units: a unit that never fires passes no gradient to either); the rest are *dead pairs*
  (input and output unit never active on the same sample);
- ``rounded``: they got a non-zero gradient in some batch and still ended the epoch
  bit-identical (every update smaller than half an ulp of the weight, or updates cancelling).

``constant = no_gradient + rounded`` and ``in_dead_unit <= no_gradient``. The engine counts them
on the device (worker/engine/train.py); the store keeps ``constant``, ``in_dead_unit`` and
``no_gradient`` (explained_counts), ``rounded`` is their difference. Only runs whose spec asks
for it (``causes``: true; it costs a few % of an epoch) count them; others, and runs trained
before decaylab counted them, answer NotComputed (404) saying so.
"""

import math
from collections import defaultdict

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import SessionDep
from server.api.routers.params import RunId
from server.core.errors import NotComputed
from server.store import crud
from server.store.models import ExplainedCount, Run
from server.views import tables
from server.views.analysis import with_layers
from server.views.figures.draw import (
    FigureOptions,
    add_legend,
    finish_panel,
    label_of_row,
    new_figure,
    plot_line,
    series_colours,
    to_png,
)
from server.views.registry import Panel, Result, view


class WeightCauses(BaseModel):
    """Weight matrix ``layer`` from epoch e-1 to e: its exactly unchanged weights by cause."""

    layer: int = Field(description="The weight matrix: Linear layer `layer` (0 first).")
    name: str = Field(description="Its state_dict name, e.g. layers.0.weight.")
    parameters: int = Field(description="Its weights.")
    constant: list[int] = Field(
        description="Per epoch: its weights exactly unchanged since the epoch before "
        "(= no_gradient + rounded)."
    )
    no_gradient: list[int] = Field(
        description="Per epoch: of those, the weights whose loss gradient was exactly 0 in every "
        "batch of the epoch."
    )
    in_dead_unit: list[int] = Field(
        description="Per epoch: of the no_gradient weights, those in a dead unit's incoming row "
        "or outgoing column (the rest are dead pairs: their two units never active together)."
    )
    rounded: list[int] = Field(
        description="Per epoch: unchanged weights that got a non-zero gradient in some batch: "
        "every update rounded away (smaller than half an ulp of the weight) or cancelled."
    )


class CausesOut(BaseModel):
    """Every exactly constant weight accounted for: no gradient (dead unit or dead pair) or
    rounded away."""

    run_id: int = Field(description="The run.")
    epochs: list[int] = Field(description="The epochs stored so far (1..E).")
    weights: list[WeightCauses] = Field(
        description="Each weight matrix's constant weights by cause."
    )


def causes(session: Session, run: Run) -> CausesOut:
    """The run's causes per weight matrix and epoch, from its stored exact counts."""
    rows = session.execute(
        select(
            ExplainedCount.epoch,
            ExplainedCount.layer_index,
            ExplainedCount.unchanged,
            ExplainedCount.explained,
            ExplainedCount.no_gradient,
        )
        .where(ExplainedCount.run_id == run.id)
        .order_by(ExplainedCount.epoch, ExplainedCount.layer_index)
    ).all()
    if run.epochs_done and (not rows or any(row.no_gradient is None for row in rows)):
        raise NotComputed(
            f"run {run.id} has no causes of constancy: it was trained with causes false (the "
            "default), or before decaylab counted them; submit it again with causes true"
        )
    epochs: list[int] = []
    by_layer: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for epoch, layer, unchanged, explained, no_gradient in rows:
        if not epochs or epochs[-1] != epoch:
            epochs.append(epoch)
        counts = by_layer[layer]
        counts["constant"].append(unchanged)
        counts["no_gradient"].append(no_gradient)
        counts["in_dead_unit"].append(explained)
        counts["rounded"].append(unchanged - no_gradient)
    (measured,) = with_layers(session, [run])
    # The weight matrices are the first len(hidden_sizes) + 1 measured tensors, in layer order.
    weights = measured.layers[: len(measured.spec.hidden_sizes) + 1]
    return CausesOut(
        run_id=run.id,
        epochs=epochs,
        weights=[
            WeightCauses(
                layer=la.index,
                name=la.name,
                parameters=la.parameters,
                constant=by_layer[la.index]["constant"],
                no_gradient=by_layer[la.index]["no_gradient"],
                in_dead_unit=by_layer[la.index]["in_dead_unit"],
                rounded=by_layer[la.index]["rounded"],
            )
            for la in weights
        ],
    )


# What the figure and the run page say the view shows.
CAPTION = (
    "Every exactly constant weight accounted for: per weight matrix, the weights unchanged from "
    "epoch e-1 to e that got no loss gradient all epoch (in a dead unit's row or column, or a "
    "dead pair whose two units were never active together) and those that got a gradient but "
    "whose every update rounded away."
)

SERIES = (
    ("constant", "exactly constant (tolerance 0)"),
    ("no_gradient", "… no gradient all epoch"),
    ("in_dead_unit", "… … of them in a dead unit's row or column"),
    ("rounded", "… got a gradient, rounded away"),
)


def _shares(weight: WeightCauses, chars: int) -> str:
    """Over all epochs: what share of the constant weights each cause has, in lines of at most
    ``chars`` characters (a panel of a figure shown small has room for less)."""
    total = sum(weight.constant)
    if not total:
        return "none constant"
    dead = sum(weight.in_dead_unit)
    pairs = sum(weight.no_gradient) - dead
    rounded = sum(weight.rounded)
    parts = [
        f"dead units {100 * dead / total:.0f}%",
        f"dead pairs {100 * pairs / total:.0f}%",
        f"rounded {100 * rounded / total:.0f}%",
    ]
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + len(" · ") + len(part) <= chars:
            lines[-1] += f" · {part}"
        else:
            lines.append(part)
    return "\n".join(lines)


def draw_causes(data: CausesOut, options: FigureOptions, label: str) -> bytes:
    """One panel per weight matrix: its exactly constant weights and their causes, in % of it;
    the panel's title gives each cause's share of all epochs' constant weights."""
    title = f"{label}\nwhy weights stay exactly constant: no gradient, or rounded away"
    panels = len(data.weights) or 1
    fig, axes = new_figure(options, panels, title)
    # new_figure's near-square grid: a panel's title has a column's share of the width.
    chars = options.chars_per_line() // math.ceil(math.sqrt(panels))
    empty = not data.epochs
    colours = series_colours(len(SERIES))
    for ax, weight in zip(axes, data.weights, strict=False):
        n = weight.parameters
        for style, ((field, text), colour) in enumerate(zip(SERIES, colours, strict=True)):
            values = getattr(weight, field)
            plot_line(ax, data.epochs, [100 * c / n for c in values], text, colour, style)
        finish_panel(
            ax,
            f"layer {weight.layer} ({n:,} weights)\n{_shares(weight, chars)}",
            "% of weights",
            empty,
        )
    if data.weights:
        add_legend(fig, axes[0])
    else:
        finish_panel(axes[0], None, "% of weights", empty)
    return to_png(fig)


CAUSES_COLUMNS = (
    "run_id",
    "epoch",
    "layer",
    "name",
    "parameters",
    "constant",
    "no_gradient",
    "in_dead_unit",
    "rounded",
)


@tables.table.register
def _causes_table(view: CausesOut) -> tables.Table:
    """A row per weight matrix and epoch with its exact counts: ``constant`` of ``parameters``
    = ``no_gradient`` + ``rounded``; ``in_dead_unit`` of the ``no_gradient``."""
    rows = [
        (view.run_id, epoch, w.layer, w.name, w.parameters, *counts)
        for w in view.weights
        for epoch, *counts in zip(
            view.epochs, w.constant, w.no_gradient, w.in_dead_unit, w.rounded, strict=True
        )
    ]
    return tables.Table(columns=CAUSES_COLUMNS, rows=rows)


@view(
    "causes",
    "/runs/{run_id}/causes",
    subject="run",
    summary="Every exactly constant weight by cause: no gradient (dead unit, dead pair) or rounded",
    model=CausesOut,
    draw=draw_causes,
    not_found="Unknown run, or one that did not count the causes (causes false, or older)",
    tags=["runs"],
    panels=[Panel("why", CAPTION, shown_if="causes"), Panel("each", CAPTION, shown_if="causes")],
)
def get_causes(run_id: RunId, session: SessionDep) -> Result:
    """Per weight matrix and epoch, its weights exactly unchanged from epoch e-1 to e
    (``constant``) = those whose loss gradient was 0 in every batch (``no_gradient``; of them
    ``in_dead_unit`` in a dead unit's row or column, the rest dead pairs) + those that got a
    gradient and still ended the epoch bit-identical (``rounded``). Exact counts.

    PNG: a panel per weight matrix, each cause in % of its weights over the epochs."""
    run = crud.get_run(session, run_id)
    return Result(causes(session, run), (label_of_row(run),))
