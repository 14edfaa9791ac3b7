"""The API's side of runs: create, read, list, cancel and delete them.

Functions take a Session and leave committing to the caller (one transaction per request). What
a worker does to a run it holds is the job protocol, in server/store/jobs.py.
"""

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.orm import Session

from server.core.errors import InvalidTransition, RunNotFound, SweepNotFound
from server.core.schemas import RunSpec, RunStatus
from server.store import lifecycle
from server.store.models import Run, Sweep, utcnow


def create_run(
    session: Session, spec: RunSpec, *, priority: int = 0, sweep_id: int | None = None
) -> Run:
    run = Run(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=RunStatus.queued.value,
        priority=priority,
        sweep_id=sweep_id,
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, run_id: int, *, for_update: bool = False) -> Run:
    query = select(Run).where(Run.id == run_id)
    if for_update:
        # PostgreSQL: holds off a worker's claim until this transaction ends (SQLite: no-op).
        query = query.with_for_update()
    run = session.scalars(query).one_or_none()
    if run is None:
        raise RunNotFound(f"run {run_id} not found")
    return run


def get_runs(session: Session, run_ids: Sequence[int]) -> list[Run]:
    """The runs in the order asked for, in one query; RunNotFound names the first one missing."""
    found = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_(run_ids)))}
    for run_id in run_ids:
        if run_id not in found:
            raise RunNotFound(f"run {run_id} not found")
    return [found[run_id] for run_id in run_ids]


# What an analysis view of a run depends on that can change: its epochs (epochs_done, and
# attempts for a restart from epoch 0), its status (a cancel, the end) and its name (labels).
# Its spec, stored epochs and snapshots never change once written.
STAMP_COLUMNS = (Run.id, Run.status, Run.epochs_done, Run.attempts, Run.name)


# Every view request reads a stamp: built once, and run on the session's connection (in its
# transaction), as the ORM's execution path costs more than the query itself; one run, the
# common case, without the IN list that SQLAlchemy expands anew each time.
_RUN_STAMP = select(*STAMP_COLUMNS).where(Run.id == bindparam("run_id"))
_RUNS_STAMPS = select(*STAMP_COLUMNS).where(Run.id.in_(bindparam("run_ids", expanding=True)))


def stamps(session: Session, run_ids: Sequence[int]) -> tuple[tuple[object, ...], ...]:
    """The runs' stamps in the order asked for, in one query; RunNotFound names the first one
    missing (so a deleted run's views answer 404 before anything is computed)."""
    connection = session.connection()
    rows = (
        connection.execute(_RUN_STAMP, {"run_id": run_ids[0]})
        if len(run_ids) == 1
        else connection.execute(_RUNS_STAMPS, {"run_ids": list(run_ids)})
    )
    found = {row[0]: tuple(row) for row in rows}
    for run_id in run_ids:
        if run_id not in found:
            raise RunNotFound(f"run {run_id} not found")
    return tuple(found[run_id] for run_id in run_ids)


def sweep_stamp(session: Session, sweep_id: int) -> tuple[object, ...]:
    """A sweep's name and its runs' stamps; SweepNotFound when there is no such sweep."""
    name = session.execute(select(Sweep.name).where(Sweep.id == sweep_id)).one_or_none()
    if name is None:
        raise SweepNotFound(f"sweep {sweep_id} not found")
    members = session.execute(
        select(*STAMP_COLUMNS).where(Run.sweep_id == sweep_id).order_by(Run.id)
    )
    return (sweep_id, name[0], tuple(tuple(row) for row in members))


def list_runs(
    session: Session, status: RunStatus | None, limit: int, offset: int
) -> tuple[int, Sequence[Run]]:
    """Newest first."""
    where = [] if status is None else [Run.status == status.value]
    total = session.scalar(select(func.count()).select_from(Run).where(*where)) or 0
    runs = session.scalars(
        select(Run).where(*where).order_by(Run.id.desc()).limit(limit).offset(offset)
    ).all()
    return total, runs


def request_cancel(session: Session, run_id: int) -> Run:
    """Cancel a run no worker holds (queued, or its lease lapsed) now; flag a held one.

    A worker that holds the run sees the flag within a heartbeat and stops at the next batch."""
    run = get_run(session, run_id, for_update=True)
    lifecycle.check(run.status, RunStatus.cancelled)
    now = utcnow()
    if lifecycle.held(run, now):
        stmt = update(Run).where(Run.id == run_id)
    else:
        stmt = lifecycle.transition(
            RunStatus.cancelled, Run.id == run_id, finished_at=now, lease_expires_at=None
        )
    session.execute(stmt.values(cancel_requested=True).execution_options(synchronize_session=False))
    session.refresh(run)
    return run


def delete_run(session: Session, run_id: int) -> None:
    """Remove a run that is not running, with every row that refers to it."""
    run = get_run(session, run_id, for_update=True)
    if run.status == RunStatus.running:
        raise InvalidTransition(f"run {run_id} is running; cancel it first")
    session.execute(delete(Run).where(Run.id == run_id))


def set_priority(session: Session, run_id: int, priority: int) -> Run:
    """Change when a run is claimed (higher first); its results do not depend on it."""
    run = get_run(session, run_id, for_update=True)
    run.priority = priority
    session.flush()
    return run
