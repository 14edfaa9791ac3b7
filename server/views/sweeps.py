"""Sweeps: a grid of runs as one experiment, with replicates and honest statistics.

- **Expansion.** ``base`` (a partial run spec) over the cartesian product of ``grid`` (a spec
  field → its values, the last field varying fastest) gives the members, each an ordinary run
  with the sweep's id. ``admit`` validates the whole body before anything is stored and refuses
  it with one 422 naming every error: the schema's (SweepIn), repeated grid values, the member
  count, and each member as ``POST /runs`` validates a spec (RunSpec and the limits). Errors are
  located in the body, positions 0-based: ``["body", "grid", field, i]`` for the i-th value of
  a grid field, ``["body", "base", ...]`` otherwise.
- **Groups.** Members that differ only in fields outside ``by`` are replicates of one condition;
  ``by`` defaults to every grid field except ``seed``. A group's statistics cover its members
  that have stored epochs, over the epochs all of them have (1..the fewest).
- **Statistics** come from the stored counts when read: the mean over a group's runs and the 95%
  interval mean ∓ t(0.975, n−1)·sd/√n (Student's t, sample sd with n−1; none for n = 1). A
  difference of two groups is Welch's (unequal variances, Welch–Satterthwaite df) or paired
  (runs matched by their grid values outside ``by``, e.g. the seed; t with m−1 df).
- **Status** is derived from the members' statuses when read, never stored.
"""

import itertools
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from scipy import special
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from server.api.deps import SessionDep, SettingsDep
from server.api.routers.params import ID_LIMIT, By, SweepId, Tolerance
from server.api.routers.params import Scope as ScopeParam
from server.core import scope as scopes
from server.core.errors import InvalidTransition, NotComputed, SweepNotFound
from server.core.runfiles import RunFiles
from server.core.schemas import (
    GRID_FIELDS,
    SPEC_FIELDS,
    GroupMetrics,
    GroupPoint,
    GroupRef,
    GroupSeries,
    RunOut,
    RunSpec,
    RunStatus,
    SeriesStats,
    SummaryAtTolerance,
    SummaryLine,
    SweepBrief,
    SweepConstancyAllOut,
    SweepConstancyOut,
    SweepDifferenceOut,
    SweepIn,
    SweepMetricsOut,
    SweepOut,
    SweepProgress,
    SweepSummaryOut,
)
from server.core.scope import Scope
from server.core.settings import Settings
from server.store import crud, lifecycle, limits
from server.store.models import EpochMetrics, Run, Sweep, utcnow
from server.views import analysis, posthoc
from server.views.figures.draw import (
    MetricName,
    draw_sweep_constancy,
    draw_sweep_difference,
    draw_sweep_metrics,
    draw_sweep_summary,
    sweep_label,
)
from server.views.registry import Panel, Result, view

CONFIDENCE = 0.95
REPLICATE_FIELD = "seed"
# At most this many distinct errors in a refusal (a bad base field fails every member alike).
MAX_ERRORS = 100
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
# "layers": a line per weight matrix; "means": the all-layer and last-two means.
SummaryScope = Literal["layers", "means"] | Scope


# --- expansion and validation ---


def _key(value: Any) -> str:
    """A JSON value as a hashable key."""
    return json.dumps(value, sort_keys=True)


def _json_equal_key(value: Any) -> str:
    """A key equal for values JSON Schema's uniqueItems calls equal: 0 and 0.0 are one number,
    true is no number."""
    if isinstance(value, float) and value.is_integer():
        return _key(int(value))
    if isinstance(value, list):
        return "[" + ",".join(map(_json_equal_key, value)) + "]"
    if isinstance(value, dict):
        return _key({k: _json_equal_key(v) for k, v in value.items()})
    return _key(value)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else json.dumps(value)


def _plain(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error as FastAPI's 422 lists it (a validator's exception as its message)."""
    if "ctx" in error:
        ctx = error["ctx"].items()
        error["ctx"] = {k: str(v) if isinstance(v, Exception) else v for k, v in ctx}
    return error


def _located(error: dict[str, Any]) -> dict[str, Any]:
    """A schema error of the body, an unknown field's saying what is known."""
    error = _plain({**error, "loc": ["body", *error["loc"]]})
    where = error["loc"][1:2]
    if (
        error["type"] == "extra_forbidden"
        and where in (["base"], ["grid"])
        and len(error["loc"]) == 3
    ):
        known = GRID_FIELDS if where == ["grid"] else SPEC_FIELDS
        error["msg"] = f"not a run spec field the {where[0]} can state; one of {', '.join(known)}"
    return error


def _duplicates(field: str, values: list[Any]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    errors = []
    for i, value in enumerate(values):
        first = seen.setdefault(_json_equal_key(value), i)
        if first != i:
            errors.append(
                {
                    "type": "value_error",
                    "loc": ["body", "grid", field, i],
                    "msg": f"Value error, repeats {field}[{first}]: a grid's values are distinct",
                    "input": value,
                }
            )
    return errors


def _too_many(counts: dict[str, int], settings: Settings) -> dict[str, Any]:
    count = math.prod(counts.values())
    return {
        "type": limits.RESOURCE_LIMIT,
        "loc": ["body", "grid"],
        "msg": f"the grid makes {count:,} runs; the limit is {settings.max_sweep_runs:,} "
        "(DECAYLAB_MAX_SWEEP_RUNS)",
        "input": counts,
        "ctx": {
            "estimate": count,
            "limit": settings.max_sweep_runs,
            "setting": "DECAYLAB_MAX_SWEEP_RUNS",
        },
    }


def _member_name(prefix: str | None, combo: dict[str, Any]) -> str:
    label = ", ".join(f"{field}={_text(value)}" for field, value in combo.items())
    return (f"{prefix}: {label}" if prefix else label)[:200]


@dataclass
class _Members:
    """The members' specs, or the errors their validation found, located in the body."""

    base: dict[str, Any]
    grid: dict[str, list[tuple[int, Any]]]  # field → (position in the body, value)
    specs: list[RunSpec]
    errors: list[dict[str, Any]]

    def check(self, settings: Settings, prefix: str | None) -> None:
        """Every member's spec as ``POST /runs`` validates it: RunSpec, then the limits."""
        fields = list(self.grid)
        for combo in itertools.product(*(self.grid[f] for f in fields)):
            where = {f: i for f, (i, _) in zip(fields, combo, strict=True)}
            values = {f: v for f, (_, v) in zip(fields, combo, strict=True)}
            try:
                spec = RunSpec.model_validate(self.base | values)
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    self._relocate(_plain(error), where)
                continue
            for error in limits.violations(spec, settings):
                self._relocate({**error, "loc": error["loc"][1:]}, where)
            self.specs.append(spec.model_copy(update={"name": _member_name(prefix, values)}))

    def _relocate(self, error: dict[str, Any], where: dict[str, int]) -> None:
        """A member's error at the grid value (or the base field) that caused it."""
        loc = tuple(error["loc"])
        field = loc[0] if loc else None
        if field in where:
            loc = ("body", "grid", field, where[field], *loc[1:])
        else:
            loc = ("body", "base", *loc)
        self.errors.append({**error, "loc": list(loc)})


def admit(body: Any, settings: Settings) -> tuple[SweepIn, list[RunSpec]]:
    """The sweep and its members' specs in grid order, or one 422 (RequestValidationError)
    naming every wrong value of the body at once, 0-based positions as in ``loc``: the body's
    schema (types, bounds, unknown fields, each stated base field), repeated grid values, the
    member count (DECAYLAB_MAX_SWEEP_RUNS), and each member's spec (the rules across fields,
    the resource limits) over the values that passed the rest. Nothing is stored either way."""
    errors: list[dict[str, Any]] = []
    sweep = None
    try:
        sweep = SweepIn.model_validate(body)
    except ValidationError as exc:
        errors += [_located(e) for e in exc.errors(include_url=False)]
    raw = body if isinstance(body, dict) else {}
    base, grid = raw.get("base", {}), raw.get("grid")
    base = base if isinstance(base, dict) else {}
    grid = grid if isinstance(grid, dict) else {}
    # What the schema refused is reported once, not again by each member it is part of: the
    # members are checked over the base fields and grid values that passed it.
    locs = [e["loc"][1:] for e in errors]
    bad_base = {loc[1] for loc in locs if loc[:1] == ["base"] and len(loc) > 1}
    bad_values = {tuple(loc[1:3]) for loc in locs if loc[:1] == ["grid"] and len(loc) > 2}
    lists = {f: v for f, v in grid.items() if f in GRID_FIELDS}
    good: dict[str, list[tuple[int, Any]]] = {}
    for field, values in lists.items():
        if not isinstance(values, list):
            continue
        duplicates = _duplicates(field, values)
        errors += duplicates
        bad = bad_values | {(field, e["loc"][3]) for e in duplicates}
        good[field] = [(i, v) for i, v in enumerate(values) if (field, i) not in bad]
    counts = {field: len(values) for field, values in lists.items() if isinstance(values, list)}
    if math.prod(counts.values()) > settings.max_sweep_runs:
        errors.append(_too_many(counts, settings))
    members = _Members(
        {k: v for k, v in base.items() if k in SPEC_FIELDS and k not in bad_base}, good, [], []
    )
    # A grid field that is no list has no values to try; its error is the schema's.
    if good.keys() == lists.keys() and math.prod(counts.values()) <= settings.max_sweep_runs:
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
        members.check(settings, name or members.base.get("name"))
        errors += members.errors
    unique = {_key([e["loc"], e["msg"]]): e for e in errors}
    if unique or sweep is None:
        raise RequestValidationError(list(unique.values())[:MAX_ERRORS])
    return sweep, members.specs


def create_sweep(session: Session, sweep: SweepIn, specs: Sequence[RunSpec]) -> Sweep:
    """The sweep and its members (in grid order, so by id), in the caller's transaction."""
    row = Sweep(
        name=sweep.name,
        base=sweep.base_fields(),
        grid=sweep.grid_fields(),
        priority=sweep.priority,
    )
    session.add(row)
    session.flush()
    for spec in specs:
        crud.create_run(session, spec, priority=sweep.priority, sweep_id=row.id)
    return row


# --- reading sweeps ---


def get_sweep(session: Session, sweep_id: int) -> Sweep:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise SweepNotFound(f"sweep {sweep_id} not found")
    return sweep


def members(session: Session, sweep_id: int, *, for_update: bool = False) -> list[Run]:
    """The sweep's runs in grid order."""
    query = select(Run).where(Run.sweep_id == sweep_id).order_by(Run.id)
    if for_update:
        query = query.with_for_update()
    return list(session.scalars(query))


def derive_status(by_status: Counter[str]) -> RunStatus:
    """queued: every member queued; running: any running, or some queued and some finished;
    once all have finished: failed if any failed, else cancelled if any was, else succeeded."""
    queued, running = by_status[RunStatus.queued], by_status[RunStatus.running]
    finished = sum(by_status.values()) - queued - running
    if running or (queued and finished):
        return RunStatus.running
    if queued:
        return RunStatus.queued
    for status in (RunStatus.failed, RunStatus.cancelled):
        if by_status[status]:
            return status
    return RunStatus.succeeded


def _brief(sweep: Sweep, runs: Iterable[tuple[str, int, int]]) -> dict[str, Any]:
    """The sweep's fields with status and progress from (status, epochs_done, epochs) rows."""
    by_status: Counter[str] = Counter()
    done = total = 0
    for status, epochs_done, epochs in runs:
        by_status[status] += 1
        done += epochs_done
        total += epochs
    return {
        "id": sweep.id,
        "name": sweep.name,
        "base": sweep.base,
        "grid": sweep.grid,
        "priority": sweep.priority,
        "created_at": sweep.created_at,
        "status": derive_status(by_status),
        "progress": SweepProgress(
            runs=sum(by_status.values()),
            by_status={s.value: by_status[s.value] for s in RunStatus},
            epochs_done=done,
            epochs_total=total,
        ),
    }


def sweep_out(session: Session, sweep: Sweep) -> SweepOut:
    runs = members(session, sweep.id)
    rows = ((r.status, r.epochs_done, r.spec["epochs"]) for r in runs)
    return SweepOut(
        **_brief(sweep, rows),
        runs=[RunOut.model_validate(r, from_attributes=True) for r in runs],
    )


def list_sweeps(session: Session, limit: int, offset: int) -> tuple[int, list[SweepBrief]]:
    """Newest first; the page's members read in one query."""
    total = session.scalar(select(func.count()).select_from(Sweep)) or 0
    sweeps = session.scalars(
        select(Sweep).order_by(Sweep.id.desc()).limit(limit).offset(offset)
    ).all()
    rows: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    query = select(Run.sweep_id, Run.status, Run.epochs_done, Run.spec).where(
        Run.sweep_id.in_([s.id for s in sweeps])
    )
    for sweep_id, status, epochs_done, spec in session.execute(query):
        rows[sweep_id].append((status, epochs_done, spec["epochs"]))
    return total, [SweepBrief(**_brief(s, rows[s.id])) for s in sweeps]


# --- cancel and delete ---


def cancel_sweep(session: Session, sweep_id: int) -> Sweep:
    """Cancel every member not yet finished: queued ones (and those whose lease lapsed) now,
    held ones at their worker's next batch (as POST /runs/{id}/cancel does)."""
    sweep = get_sweep(session, sweep_id)
    unfinished = [
        r for r in members(session, sweep_id, for_update=True) if r.status not in lifecycle.FINISHED
    ]
    if not unfinished:
        raise InvalidTransition(f"every run of sweep {sweep_id} has finished")
    now = utcnow()
    free = lifecycle.unheld(now)
    in_sweep = Run.sweep_id == sweep_id
    session.execute(
        lifecycle.transition(
            RunStatus.cancelled,
            in_sweep,
            free,
            finished_at=now,
            lease_expires_at=None,
            cancel_requested=True,
        )
    )
    # What a worker holds (or claimed meanwhile) stops when its heartbeat sees the flag.
    session.execute(
        update(Run)
        .where(in_sweep, Run.status == RunStatus.running.value)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    session.expire_all()
    return sweep


def delete_sweep(session: Session, sweep_id: int) -> list[int]:
    """Delete a sweep and its members with their rows (409 while one is running); returns the
    members' ids, whose files the caller removes once this has committed."""
    get_sweep(session, sweep_id)
    runs = members(session, sweep_id, for_update=True)
    running = [r.id for r in runs if r.status == RunStatus.running]
    if running:
        raise InvalidTransition(
            f"sweep {sweep_id} has running runs {running}; cancel the sweep first"
        )
    ids = [r.id for r in runs]
    session.execute(delete(Run).where(Run.sweep_id == sweep_id))
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))
    return ids


# --- groups ---


def default_by(sweep: Sweep) -> list[str]:
    return [field for field in sweep.grid if field != REPLICATE_FIELD]


def parse_by(sweep: Sweep, by: Sequence[str] | None) -> list[str]:
    """``by``'s spec fields ("" names none: one group of every member) or the default."""
    return default_by(sweep) if by is None else [field for field in by if field]


@dataclass(frozen=True)
class Group:
    index: int
    values: dict[str, Any]
    runs: list[Run]

    def ref(self, with_data: Sequence[Run]) -> GroupRef:
        return GroupRef(
            index=self.index,
            values=self.values,
            run_ids=[r.id for r in with_data],
            n=len(with_data),
        )


def group(runs: Sequence[Run], by: Sequence[str]) -> list[Group]:
    """The members grouped by their specs' values of ``by``, in grid order of first member."""
    found: dict[str, Group] = {}
    for run in runs:
        values = {field: run.spec.get(field) for field in by}
        key = _key(values)
        if key not in found:
            found[key] = Group(len(found), values, [])
        found[key].runs.append(run)
    return list(found.values())


# --- statistics ---


def t_quantile(df: np.ndarray | float) -> np.ndarray:
    """Student's t at (1 + CONFIDENCE) / 2 with ``df`` degrees of freedom (any real df > 0)."""
    return special.stdtrit(df, (1 + CONFIDENCE) / 2)


@dataclass(frozen=True)
class Stats:
    mean: np.ndarray
    sd: np.ndarray | None
    low: np.ndarray | None
    high: np.ndarray | None


def stats(samples: np.ndarray) -> Stats:
    """Mean over the runs (axis 0) and the t interval; no interval for a single run."""
    n = samples.shape[0]
    if n == 0:
        return Stats(np.zeros(samples.shape[1:]), None, None, None)
    mean = samples.mean(axis=0)
    if n < 2:
        return Stats(mean, None, None, None)
    sd = samples.std(axis=0, ddof=1)
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return Stats(mean, sd, mean - half, mean + half)


def _list(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else values.tolist()


def _series(s: Stats) -> dict[str, Any]:
    return {"mean": s.mean.tolist(), "ci_low": _list(s.low), "ci_high": _list(s.high)}


@dataclass(frozen=True)
class Resolving:
    """A view's one tolerance and where the runs' snapshots are, for the resolver."""

    tol: float
    files_of: Callable[[int], RunFiles]


@dataclass(frozen=True)
class Measured:
    """The groups, each with its members that have stored epochs and their percentages."""

    groups: list[Group]
    data: list[list[analysis.RunPercent]]

    def epochs(self, g: int) -> list[int]:
        """The epochs every run of group g has (1..the fewest)."""
        runs = self.data[g]
        return min((r.percent.epochs for r in runs), key=len) if runs else []

    def samples(self, g: int, tol: float, scope: Scope) -> np.ndarray:
        """runs × epochs of group g at ``tol`` for ``scope``."""
        length = len(self.epochs(g))
        rows = [r.scoped(scope)[:length, r.tolerance_index(tol)] for r in self.data[g]]
        return np.array(rows).reshape(len(rows), length)


def measure(
    session: Session, sweep: Sweep, by: Sequence[str], at: Resolving | None = None
) -> Measured:
    """The groups and their members' percentages: at every tolerance the runs have, or at
    ``at``'s one tolerance, resolved as every view resolves it (server.views.posthoc)."""
    runs = members(session, sweep.id)
    started = [r for r in runs if r.epochs_done > 0]
    measured = (
        analysis.percentages(session, started)
        if at is None
        else posthoc.percentages_at(session, started, at.tol, at.files_of)
    )
    percents = {p.run.row.id: p for p in measured}
    groups = group(runs, by)
    data = [
        [percents[r.id] for r in g.runs if r.id in percents and percents[r.id].percent.epochs]
        for g in groups
    ]
    return Measured(groups, data)


def _tolerances(measured: Measured, tol: float | None) -> list[float]:
    runs = [p for g in measured.data for p in g]
    if not runs:
        raise NotComputed("no run of the sweep has stored an epoch yet")
    if tol is None:
        return analysis.shared_tolerances([p.run for p in runs])
    # Every run has it (resolved); the first's spelling.
    return [runs[0].tolerances[runs[0].tolerance_index(tol)]]


def _group_series(measured: Measured, g: int, tol: float, scope: Scope) -> GroupSeries:
    with_data = measured.data[g]
    s = stats(measured.samples(g, tol, scope))
    return GroupSeries(
        values=measured.groups[g].values,
        run_ids=[p.run.row.id for p in with_data],
        n=len(with_data),
        epochs=measured.epochs(g),
        **_series(s),
    )


def constancy(
    session: Session, sweep: Sweep, at: Resolving | None, scope: Scope, by: list[str]
) -> SweepConstancyOut | SweepConstancyAllOut:
    """Per group and epoch, the mean % of weights constant for ``scope`` and its interval; at
    one tolerance, or at every tolerance all the runs share."""
    measured = measure(session, sweep, by, at)
    tol = None if at is None else at.tol
    tolerances = _tolerances(measured, tol)
    results = [
        SweepConstancyOut(
            sweep_id=sweep.id,
            tolerance=t,
            scope=str(scope),
            by=by,
            groups=[_group_series(measured, g, t, scope) for g in range(len(measured.groups))],
        )
        for t in tolerances
    ]
    if tol is not None:
        return results[0]
    return SweepConstancyAllOut(
        sweep_id=sweep.id, scope=str(scope), by=by, tolerances=tolerances, results=results
    )


def run_metrics(session: Session, runs: Iterable[Run]) -> dict[int, list[tuple[float, ...]]]:
    """Each run's stored epochs (in order) as tuples of METRICS, read in one query."""
    per_run: dict[int, list[tuple[float, ...]]] = defaultdict(list)
    columns = [getattr(EpochMetrics, m) for m in METRICS]
    query = (
        select(EpochMetrics.run_id, *columns)
        .where(EpochMetrics.run_id.in_([r.id for r in runs if r.epochs_done > 0]))
        .order_by(EpochMetrics.run_id, EpochMetrics.epoch)
    )
    for run_id, *values in session.execute(query):
        per_run[run_id].append(tuple(values))
    return per_run


def metrics(session: Session, sweep: Sweep, by: list[str]) -> SweepMetricsOut:
    """Per group and epoch, the mean loss and accuracy and their intervals; every member's
    metrics read in one query."""
    runs = members(session, sweep.id)
    per_run = run_metrics(session, runs)
    groups = []
    for g in group(runs, by):
        with_data = [r for r in g.runs if per_run.get(r.id)]
        length = min((len(per_run[r.id]) for r in with_data), default=0)
        # runs × epochs × metrics
        samples = np.array([per_run[r.id][:length] for r in with_data], dtype=float)
        samples = samples.reshape(len(with_data), length, len(METRICS))
        series = {
            m: SeriesStats(**_series(stats(samples[:, :, i]))) if with_data else _empty_series()
            for i, m in enumerate(METRICS)
        }
        groups.append(
            GroupMetrics(
                values=g.values,
                run_ids=[r.id for r in with_data],
                n=len(with_data),
                epochs=list(range(1, length + 1)),
                **series,
            )
        )
    return SweepMetricsOut(sweep_id=sweep.id, by=by, groups=groups)


def _empty_series() -> SeriesStats:
    return SeriesStats(mean=[], ci_low=None, ci_high=None)


def _numeric(values: Iterable[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _summary_scopes(measured: Measured, scope: SummaryScope) -> list[Scope]:
    if scope == "means":
        return ["all", "last2"]
    if scope == "layers":
        # The weight matrices of the first run with data (every run is checked as it is read).
        layers = next(p for g in measured.data for p in g).run.layers
        return [layers[i].index for i in scopes.weight_layers([la.name for la in layers])]
    return [scope]


def summary(
    session: Session,
    sweep: Sweep,
    at: Resolving | None,
    scope: SummaryScope,
    epoch: int | None,
    by: list[str],
) -> SweepSummaryOut:
    """Dose-response: each group's mean and interval at ``epoch`` (default: the last epoch every
    group has), per tolerance (or at one) and per line of ``scope``."""
    measured = measure(session, sweep, by, at)
    tol = None if at is None else at.tol
    tolerances = _tolerances(measured, tol)
    last = min(len(measured.epochs(g)) for g in range(len(measured.groups)))
    if epoch is None:
        if last == 0:
            raise NotComputed("a group of the sweep has no stored epoch yet")
        epoch = last
    for g in range(len(measured.groups)):
        if epoch not in measured.epochs(g):
            shown = measured.groups[g].values
            raise NotComputed(
                f"group {shown} has epochs 1..{len(measured.epochs(g))}, not epoch {epoch}"
            )
    lines = _summary_scopes(measured, scope)
    x = next((f for f in by if _numeric(g.values[f] for g in measured.groups)), None)
    results = []
    for t in tolerances:
        per_line = []
        for line in lines:
            points = []
            for g, grp in enumerate(measured.groups):
                s = stats(measured.samples(g, t, line)[:, epoch - 1 : epoch])
                points.append(
                    GroupPoint(
                        values=grp.values,
                        run_ids=[p.run.row.id for p in measured.data[g]],
                        n=len(measured.data[g]),
                        mean=float(s.mean[0]),
                        sd=None if s.sd is None else float(s.sd[0]),
                        ci_low=None if s.low is None else float(s.low[0]),
                        ci_high=None if s.high is None else float(s.high[0]),
                    )
                )
            per_line.append(SummaryLine(scope=str(line), points=points))
        results.append(SummaryAtTolerance(tolerance=t, lines=per_line))
    return SweepSummaryOut(
        sweep_id=sweep.id, epoch=epoch, by=by, x=x, tolerances=tolerances, results=results
    )


def difference(
    session: Session,
    sweep: Sweep,
    a: int,
    b: int,
    at: Resolving,
    scope: Scope,
    method: Literal["welch", "paired"],
    by: list[str],
) -> SweepDifferenceOut:
    """Group b's mean minus group a's at every epoch both have, with its 95% interval."""
    measured = measure(session, sweep, by, at)
    tol = at.tol
    count = len(measured.groups)
    for name, g in (("a", a), ("b", b)):
        if g >= count:
            raise NotComputed(f"sweep {sweep.id} has groups 0..{count - 1}, not {name}={g}")
    (tolerance,) = _tolerances(measured, tol)
    length = min(len(measured.epochs(a)), len(measured.epochs(b)))
    xa = measured.samples(a, tol, scope)[:, :length]
    xb = measured.samples(b, tol, scope)[:, :length]
    pairs = None
    if method == "paired":
        pairs, xa, xb = pair(measured, a, b, by, xa, xb)
        d = xb - xa
        m = d.shape[0]
        diff = d.mean(axis=0)
        df = np.full(length, m - 1.0) if m >= 2 else None
        half = None if df is None else t_quantile(m - 1) * d.std(axis=0, ddof=1) / math.sqrt(m)
    else:
        na, nb = xa.shape[0], xb.shape[0]
        diff = xb.mean(axis=0) - xa.mean(axis=0)
        if na >= 2 and nb >= 2:
            va = xa.var(axis=0, ddof=1) / na
            vb = xb.var(axis=0, ddof=1) / nb
            se = np.sqrt(va + vb)
            with np.errstate(invalid="ignore", divide="ignore"):
                df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
            # No spread at all: the interval is the point, and df is the pooled one.
            df = np.where(se > 0, df, na + nb - 2.0)
            half = t_quantile(df) * se
        else:
            df = half = None
    return SweepDifferenceOut(
        sweep_id=sweep.id,
        tolerance=tolerance,
        scope=str(scope),
        method=method,
        a=measured.groups[a].ref([p.run.row for p in measured.data[a]]),
        b=measured.groups[b].ref([p.run.row for p in measured.data[b]]),
        pairs=pairs,
        epochs=list(range(1, length + 1)),
        difference=diff.tolist(),
        ci_low=None if half is None else (diff - half).tolist(),
        ci_high=None if half is None else (diff + half).tolist(),
        df=_list(df),
    )


def pair(
    measured: Measured, a: int, b: int, by: Sequence[str], xa: np.ndarray, xb: np.ndarray
) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Match the runs of groups a and b by their grid values outside ``by`` (e.g. the seed)."""
    others = [f for f in measured.groups[a].runs[0].spec if f not in by and f != "name"]

    def keyed(g: int) -> dict[str, int]:
        keys = [_key({f: p.run.row.spec.get(f) for f in others}) for p in measured.data[g]]
        if len(set(keys)) != len(keys):
            raise NotComputed(f"group {g} has runs alike outside {list(by)}: no pairing")
        return {k: i for i, k in enumerate(keys)}

    ka, kb = keyed(a), keyed(b)
    if set(ka) != set(kb):
        raise NotComputed(
            f"groups {a} and {b} do not have runs of the same other values (e.g. seeds) to pair"
        )
    order = list(ka)
    pairs = [
        [measured.data[a][ka[k]].run.row.id, measured.data[b][kb[k]].run.row.id] for k in order
    ]
    return pairs, xa[[ka[k] for k in order]], xb[[kb[k] for k in order]]


# --- the views (server/views/registry.py) ---------------------------------------------------

NOT_COMPUTED = "Unknown sweep, or a tolerance/layer/epoch not there"
SummaryScopeQuery = Annotated[
    SummaryScope,
    Query(
        description="layers (a line per layer), means (all and last2), all, last2 or a layer index"
    ),
]
INTERVAL = "mean over seeds with its 95% interval"


def _label(sweep: Sweep) -> str:
    return sweep_label(sweep.id, sweep.name)


def _at(tol: float | None, settings: Settings) -> Resolving | None:
    return None if tol is None else Resolving(tol, settings.run_files)


@view(
    "sweep_constancy",
    "/sweeps/{sweep_id}/constancy",
    subject="sweep",
    summary="Per group: mean % of weights constant per epoch with its 95% interval",
    model=SweepConstancyOut | SweepConstancyAllOut,
    draw=draw_sweep_constancy,
    not_found=NOT_COMPUTED,
    tags=["sweeps"],
    panels=[Panel("sweep", "% of weights constant between epochs, {scope}, {which}: " + INTERVAL)],
)
def get_sweep_constancy(
    sweep_id: SweepId,
    session: SessionDep,
    settings: SettingsDep,
    tol: Tolerance = None,
    scope: ScopeParam = "all",
    by: By = None,
) -> Result:
    """Without ``tol``, every tolerance all the runs share; a ``tol`` resolves for each run as
    in ``GET /runs/{run_id}/constancy``. PNG: one panel per tolerance, one line per group with
    its interval shaded."""
    sweep = get_sweep(session, sweep_id)
    data = constancy(session, sweep, _at(tol, settings), scope, parse_by(sweep, by))
    return Result(data, (_label(sweep),))


@view(
    "sweep_metrics",
    "/sweeps/{sweep_id}/metrics",
    subject="sweep",
    summary="Per group: mean loss and accuracy per epoch with their 95% intervals",
    model=SweepMetricsOut,
    draw=draw_sweep_metrics,
    not_found="No sweep with that id",
    tags=["sweeps"],
    panels=[
        Panel("sweep", f"Train and test loss: {INTERVAL}", {"metric": "loss"}),
        Panel("sweep", f"Train and test accuracy: {INTERVAL}", {"metric": "accuracy"}),
    ],
)
def get_sweep_metrics(
    sweep_id: SweepId,
    session: SessionDep,
    metric: Annotated[MetricName, Query(description="PNG: loss or accuracy")] = "loss",
    by: By = None,
) -> Result:
    """PNG: train and test panels, one line per group with its interval shaded."""
    sweep = get_sweep(session, sweep_id)
    return Result(metrics(session, sweep, parse_by(sweep, by)), (metric, _label(sweep)))


@view(
    "sweep_summary",
    "/sweeps/{sweep_id}/summary",
    subject="sweep",
    summary="Dose-response: every group's mean and 95% interval at one epoch",
    model=SweepSummaryOut,
    draw=draw_sweep_summary,
    not_found=NOT_COMPUTED,
    tags=["sweeps"],
    panels=[
        Panel(
            "sweep",
            "Dose-response at the last epoch every group has: mean of all layers and of the "
            "last two, {which}, with 95% intervals",
            {"scope": "means"},
        )
    ],
)
def get_sweep_summary(
    sweep_id: SweepId,
    session: SessionDep,
    settings: SettingsDep,
    tol: Tolerance = None,
    scope: SummaryScopeQuery = "means",
    epoch: Annotated[
        int | None, Query(ge=1, le=1000, description="default: the last epoch every group has")
    ] = None,
    by: By = None,
) -> Result:
    """PNG: the first numeric field of ``by`` on a symlog x axis (0 beside 1e-4..1e-2), one
    line per layer or scope, one panel per tolerance."""
    sweep = get_sweep(session, sweep_id)
    data = summary(session, sweep, _at(tol, settings), scope, epoch, parse_by(sweep, by))
    return Result(data, (_label(sweep),))


@view(
    "sweep_difference",
    "/sweeps/{sweep_id}/difference",
    subject="sweep",
    summary="Group b minus group a per epoch, with its 95% interval (Welch or paired)",
    model=SweepDifferenceOut,
    draw=draw_sweep_difference,
    not_found=NOT_COMPUTED,
    tags=["sweeps"],
)
def get_sweep_difference(
    sweep_id: SweepId,
    session: SessionDep,
    settings: SettingsDep,
    a: Annotated[int, Query(ge=0, lt=ID_LIMIT, description="a group's index in the views")],
    b: Annotated[int, Query(ge=0, lt=ID_LIMIT, description="a group's index in the views")],
    tol: Annotated[float, Query(ge=0, allow_inf_nan=False, description="one of the tolerances")],
    scope: ScopeParam = "all",
    method: Annotated[
        Literal["welch", "paired"],
        Query(
            description="welch: unequal variances, Welch–Satterthwaite df; paired: runs matched "
            "by their grid values outside by (e.g. seed), t with pairs−1 df"
        ),
    ] = "welch",
    by: By = None,
) -> Result:
    sweep = get_sweep(session, sweep_id)
    at = Resolving(tol, settings.run_files)
    data = difference(session, sweep, a, b, at, scope, method, parse_by(sweep, by))
    return Result(data, (_label(sweep),))
