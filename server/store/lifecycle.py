"""The run status machine: the one place that says which status changes are allowed.

Every status change is an UPDATE built by ``transition``, guarded in SQL by the statuses the
target may be reached from, so a change that lost a race (a run finished or deleted meanwhile)
changes nothing instead of overwriting. The CHECK constraint on ``runs.status`` keeps the value
itself valid.
"""

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, or_, update

from server.core.errors import InvalidTransition
from server.core.schemas import RunStatus
from server.store.models import Run

Q, R = RunStatus.queued, RunStatus.running

ALLOWED: dict[RunStatus, frozenset[RunStatus]] = {
    # claimed by a worker, or cancelled before it started
    Q: frozenset({R, RunStatus.cancelled}),
    # running -> running: another worker takes over a run whose lease lapsed;
    # running -> queued: a worker shutting down hands the run back.
    R: frozenset({R, Q, RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled}),
    RunStatus.succeeded: frozenset(),
    RunStatus.failed: frozenset(),
    RunStatus.cancelled: frozenset(),
}

# The statuses a run ends in: nothing follows them. The one definition (the client's comes
# from it too, through decaylab/views.py).
FINISHED = frozenset(s for s, targets in ALLOWED.items() if not targets)


# A worker holds a running run while its lease has not expired; one whose lease expired before
# now is free for another worker to take over (and a cancel ends it at once). The one rule, in
# SQL and for a run already read.


def lease_lapsed(now: datetime) -> ColumnElement[bool]:
    return and_(Run.status == R.value, Run.lease_expires_at < now)


def unheld(now: datetime) -> ColumnElement[bool]:
    """No worker holds the run: it is queued, or its lease lapsed."""
    return or_(Run.status == Q.value, lease_lapsed(now))


def held(run: Run, now: datetime) -> bool:
    expires = run.lease_expires_at
    return run.status == R.value and expires is not None and not expires < now


def sources(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses from which ``target`` may be reached."""
    return frozenset(s for s, targets in ALLOWED.items() if target in targets)


def check(current: str, target: RunStatus) -> None:
    if target not in ALLOWED[RunStatus(current)]:
        allowed = " or ".join(sorted(s.value for s in sources(target)))
        raise InvalidTransition(
            f"a {current} run cannot become {target.value} (only a {allowed} run can)"
        )


def transition(target: RunStatus, *where: ColumnElement[bool], **values: Any) -> Update:
    """``UPDATE runs SET status = target, **values WHERE *where AND status may reach target``."""
    allowed = sorted(s.value for s in sources(target))
    return (
        update(Run)
        .where(*where, Run.status.in_(allowed))
        .values(status=target.value, **values)
        .execution_options(synchronize_session=False)
    )
