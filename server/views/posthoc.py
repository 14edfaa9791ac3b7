"""Constancy at any tolerance after the fact.

``GET /runs/{id}/constancy?tol=X`` answers, in this order, from the run's own tolerances, from
its movement spectrum (the ladder every run measures,
server.core.experiment.SPECTRUM_TOLERANCES), or, for a run with ``keep_snapshots``, from its
weight snapshots: computed here with NumPy in float32 exactly as the engine's kernel defines
constancy (worker/engine/constancy.py), and cached per (run, epoch, tolerance) in a cachetools
LRU, so that a running run only computes its new epochs. Otherwise the 404 lists the tolerances
the run has and says that snapshots would allow any."""

import io
import math
import threading
from collections.abc import Hashable, Sequence

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
    NumPy, in float32, ``|curr - prev| <= tol * |ref|`` (ref = prev for basis "previous", curr
    for "next") with np.isclose's clauses: a non-finite ref counts only when both values are
    equal, NaN never, -0.0 equals +0.0."""
    prev = np.asarray(prev, dtype=np.float32)
    curr = np.asarray(curr, dtype=np.float32)
    ref = np.abs(prev if basis == "previous" else curr)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(curr - prev)
        constant = (diff <= np.float32(tol) * ref) & np.isfinite(ref)
        constant |= curr == prev
    return int(np.count_nonzero(constant))


def _matching(tolerances: Sequence[float], tol: float) -> int | None:
    # As analysis does: lenient only about float spelling (1e-3 vs 0.001); 0 matches only 0.
    for i, t in enumerate(tolerances):
        if math.isclose(t, tol, rel_tol=1e-9, abs_tol=0.0):
            return i
    return None


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


def constancy(session: Session, run: Run, tol: float, files: RunFiles) -> ConstancyOut:
    """The run's constancy at ``tol``: stored, on its spectrum, or from its snapshots."""
    try:
        return analysis.constancy(session, run, tol)
    except NotComputed as missing:
        not_stored = missing
    (measured,) = analysis.with_layers(session, [run])
    ladder = mechanism.ladders(session, [run])[run.id]
    index = None if ladder is None else _matching(ladder, tol)
    if ladder is not None and index is not None:
        epochs, counts = mechanism.spectrum_counts(session, [run], {run.id: ladder})[run.id]
        return analysis.constancy_view(measured, ladder[index], epochs, counts[:, :, index])
    if measured.spec.keep_snapshots:
        names = [la.name for la in measured.layers]
        per_epoch = snapshot_counts(files, run, names, tol, measured.spec.basis)
        counts = np.array(per_epoch, dtype=np.int64).reshape(len(per_epoch), len(names))
        return analysis.constancy_view(measured, tol, list(range(1, len(per_epoch) + 1)), counts)
    spectrum = "" if ladder is None else f" and the movement spectrum's {ladder}"
    raise NotComputed(
        f"{not_stored}{spectrum}; it keeps no snapshots: a run with keep_snapshots can answer"
        " any tolerance after the fact from its weights"
    )
