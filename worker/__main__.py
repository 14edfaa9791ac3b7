"""``python -m worker``: claim queued runs one at a time and train them.

SIGTERM or SIGINT: stop at the next batch, hand the run back to the queue (another worker resumes
it from its last checkpoint) and exit 0.
"""

import argparse
import logging
import signal
import sys

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from server.core.runfiles import ArtifactStoreError
from server.core.settings import get_settings
from server.store.db import Database
from worker.loop import Worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--once", action="store_true", help="train at most one run, then exit")
    parser.add_argument("--exit-when-idle", action="store_true", help="exit when no run is waiting")
    parser.add_argument(
        "--check", action="store_true", help="exit 0 if the database answers (health check)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = get_settings()
    db = Database(settings.database_url)
    if args.check:
        try:
            with db.reader() as session:
                session.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            print(f"database unavailable: {exc}", file=sys.stderr)
            return 1
        return 0
    try:
        settings.check_artifacts()
    except ArtifactStoreError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    db.upgrade()
    worker = Worker(settings, db)
    signal.signal(signal.SIGTERM, worker.request_shutdown)
    signal.signal(signal.SIGINT, worker.request_shutdown)
    try:
        worker.run(once=args.once, exit_when_idle=args.exit_when_idle)
    finally:
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
