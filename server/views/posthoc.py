"""The one tolerance resolver: constancy at any tolerance, the same way in every view.

A view asked for ``tol`` (a run's constancy, a comparison, a sweep's views) gets each run's
exact counts at ``tol`` from, in this order: the run's own tolerances; its movement spectrum
(the ladder every run measures, server.core.experiment.SPECTRUM_TOLERANCES); its weight
snapshots (a run with ``keep_snapshots``), counted here with NumPy in float32 exactly as the
engine's kernel defines constancy (worker/engine/constancy.py) and cached per (run, epoch,
tolerance) in a cachetools LRU, so that a running run only computes its new epochs. Otherwise a
404 says, for each run, what it has and that snapshots would allow any tolerance."""

import io
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from cachetools import LRUCache
from sqlalchemy.orm import Session

from server.core.errors import NotComputed
from server.core.runfiles import BucketUnavailable, RunFiles
from server.core.schemas import ConstancyOut
from server.store.models import Run
from server.views import analysis, mechanism

# (run directory, created_at, epoch, tolerance, basis, tensor names) → a count per tensor.
# An entry is a few dozen bytes: 65,536 of them are a few MiB.
_CACHE: LRUCache[Hashable, tuple[int, ...]] = LRUCache(maxsize=65_536)
_LOCK = threading.Lock()


def constant_count(prev: np.ndarray, curr: np.ndarray, tol: float, basis: str) -> int:
    """How many weights are constant from ``prev`` to ``curr`` at ``tol``: the engine's kernel in
    NumPy, in the weights' dtype (float32, or float64 for a float64 run's snapshots),
    ``|curr - prev| <= tol * |ref|`` (ref = prev for basis "previous", curr for "next") with
    np.isclose's clauses: a non-finite ref counts only when both values are equal, NaN never,
    -0.0 equals +0.0."""
    dtype = np.float64 if np.asarray(prev).dtype == np.float64 else np.float32
    prev = np.asarray(prev, dtype=dtype)
    curr = np.asarray(curr, dtype=dtype)
    ref = np.abs(prev if basis == "previous" else curr)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(curr - prev)
        constant = (diff <= dtype(tol) * ref) & np.isfinite(ref)
        constant |= curr == prev
    return int(np.count_nonzero(constant))


def snapshot_counts(
    files: RunFiles, run: Run, names: Sequence[str], tol: float, basis: str
) -> list[tuple[int, ...]]:
    """Per epoch 1..epochs_done, each named tensor's count at ``tol`` from the snapshots."""
    stamp = run.created_at.isoformat() if run.created_at else ""

    def key(epoch: int) -> Hashable:
        return (files.location, stamp, epoch, float(tol), basis, tuple(names))

    epochs = range(1, run.epochs_done + 1)
    with _LOCK:
        found = {e: _CACHE.get(key(e)) for e in epochs}
    loaded: dict[int, dict[str, np.ndarray]] = {}

    def load(epoch: int) -> dict[str, np.ndarray]:
        if epoch not in loaded:
            try:
                # Read whole: np.load needs a seekable file, and one epoch's weights are small.
                data = io.BytesIO(files.read(files.snapshot(epoch)))
                with np.load(data) as arrays:
                    loaded[epoch] = {n: arrays[n] for n in names}
            except (OSError, KeyError, ValueError, BucketUnavailable) as exc:
                raise NotComputed(
                    f"run {run.id}: the snapshot of epoch {epoch} cannot be read ({exc})"
                ) from exc
        return loaded[epoch]

    for epoch in epochs:
        if found[epoch] is not None:
            continue
        before, after = load(epoch - 1), load(epoch)
        counts = tuple(constant_count(before[n], after[n], tol, basis) for n in names)
        loaded.pop(epoch - 1)  # at most two epochs' weights in memory
        found[epoch] = counts
        with _LOCK:
            _CACHE[key(epoch)] = counts
    return [c for c in found.values() if c is not None]


@dataclass(frozen=True)
class Resolved:
    """A run's exact counts at one tolerance: epochs × layers, and the tolerance as the answer
    states it (the run's own spelling when it has it)."""

    tolerance: float
    epochs: list[int]
    counts: np.ndarray


def counts_at(
    session: Session,
    runs: Sequence[analysis.MeasuredRun],
    tol: float,
    files_of: Callable[[int], RunFiles],
) -> dict[int, Resolved]:
    """Each run's counts at ``tol``: stored, on its spectrum, or from its snapshots (in that
    order, for all runs in a fixed number of queries); NotComputed says what each run that has
    none of them has instead."""
    found: dict[int, Resolved] = {}
    own = {
        r.row.id: t for r in runs if (t := analysis.matching(r.spec.tolerances, tol)) is not None
    }
    if own:
        stored = analysis.stored_counts(session, [r for r in runs if r.row.id in own])
        for run in runs:
            if (t := own.get(run.row.id)) is not None:
                epochs, counts = stored[run.row.id]
                found[run.row.id] = Resolved(run.spec.tolerances[t], epochs, counts[:, :, t])
    rest = [r for r in runs if r.row.id not in found]
    ladder_of = mechanism.ladders(session, [r.row for r in rest]) if rest else {}
    on_ladder = {
        r.row.id: i
        for r in rest
        if (ladder := ladder_of[r.row.id]) is not None
        and (i := analysis.matching(ladder, tol)) is not None
    }
    if on_ladder:
        rows = [r.row for r in rest if r.row.id in on_ladder]
        spectra = mechanism.spectrum_counts(session, rows, ladder_of)
        for run_id, i in on_ladder.items():
            epochs, counts = spectra[run_id]
            ladder = ladder_of[run_id]
            assert ladder is not None
            found[run_id] = Resolved(ladder[i], epochs, counts[:, :, i])
    missing = []
    for run in rest:
        if run.row.id in found:
            continue
        if run.spec.keep_snapshots:
            names = [la.name for la in run.layers]
            per_epoch = snapshot_counts(files_of(run.row.id), run.row, names, tol, run.spec.basis)
            counts = np.array(per_epoch, dtype=np.int64).reshape(len(per_epoch), len(names))
            found[run.row.id] = Resolved(tol, list(range(1, len(per_epoch) + 1)), counts)
            continue
        ladder = ladder_of[run.row.id]
        spectrum = "" if ladder is None else f" or on the movement spectrum's ladder {ladder}"
        missing.append(
            f"run {run.row.id} has no results for tol={tol:g}: it computed "
            f"{run.spec.tolerances}{spectrum} and keeps no snapshots"
        )
    if missing:
        raise NotComputed(
            "; ".join(missing) + " (a run with keep_snapshots answers any tolerance from its"
            " weights)"
        )
    return {r.row.id: found[r.row.id] for r in runs}


def percentages_at(
    session: Session, runs: Sequence[Run], tol: float, files_of: Callable[[int], RunFiles]
) -> list[analysis.RunPercent]:
    """Every run's percentages at ``tol`` alone, resolved as above, in the order given."""
    measured = analysis.with_layers(session, runs)
    resolved = counts_at(session, measured, tol, files_of)
    return [analysis.percent_at(run, **vars(resolved[run.row.id])) for run in measured]


def constancy(
    session: Session, run: Run, tol: float, files_of: Callable[[int], RunFiles]
) -> ConstancyOut:
    """The run's constancy at ``tol``, resolved as above."""
    (item,) = percentages_at(session, [run], tol, files_of)
    return analysis.constancy_out(item)
