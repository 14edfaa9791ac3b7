"""Engine, sessions and schema. Every difference between SQLite and PostgreSQL lives here.

SQLite (API and workers are separate processes on one file): WAL so readers never block the
writer, a busy timeout so writers queue instead of failing, foreign keys on, and write
transactions opened with ``BEGIN IMMEDIATE`` — a deferred transaction that upgrades from read to
write gets SQLITE_BUSY at once instead of waiting.

PostgreSQL (API and workers on any number of machines): read sessions are REPEATABLE READ, so a
request sees one snapshot as it does on SQLite (READ COMMITTED would give each statement its
own); write transactions that stall are ended by the server, so a worker machine that vanishes
mid-transaction cannot keep its run locked; claims lock with ``FOR UPDATE SKIP LOCKED``;
migrations serialise on an advisory lock.
"""

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Execution option a write session's engine carries; the begin hooks read it.
_IMMEDIATE = "decaylab_begin_immediate"
BUSY_TIMEOUT_SECONDS = 30.0
# PostgreSQL ends a write transaction that waits this long for its client's next statement
# (a frozen or vanished client; ours send theirs back to back), so its row locks are released.
STALLED_WRITE_SECONDS = 10.0
# anyio's default thread limiter: how many sync routes the API runs at once.
SQLITE_POOL_SIZE = 40
# Any fixed number: the key of the advisory lock PostgreSQL migrations take.
_MIGRATION_LOCK_KEY = 0x0DECA1AB


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and explicit BEGINs,
    PostgreSQL write transactions a limit on stalling."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return _postgresql_engine(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_SECONDS},
        # As many connections kept open as the API's thread pool serves requests at once: with
        # SQLAlchemy's default of 5, every request past the fifth under load opened a connection
        # (four PRAGMAs) and closed it again. An SQLite connection is a file handle and a cache.
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=SQLITE_POOL_SIZE // 2,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level: pysqlite's own implicit BEGIN is always deferred.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        _enable_wal(cursor)
        # Safe in WAL mode against process crashes; only a power loss can drop the last commit.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgresql_engine(url: str) -> Engine:
    """An engine on which write transactions that stall are ended by the server."""
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_IMMEDIATE, False):
            # Without it a row lock outlives a worker machine that lost power until TCP notices
            # (hours): the run could not be taken over and its cancel request would hang.
            timeout_ms = int(STALLED_WRITE_SECONDS * 1000)
            conn.exec_driver_sql(f"SET LOCAL idle_in_transaction_session_timeout = {timeout_ms}")

    return engine


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL (it stays so). The switch needs the file to itself, and SQLite
    answers "locked" at once, without its busy handler, when several processes open a new file
    together (the API and workers starting on a fresh volume): retry within the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            # An in-memory database answers "memory": it has no journal file to switch.
            if cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0] in ("wal", "memory"):
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        else:
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("could not switch the database to WAL mode")
        time.sleep(0.05)


def lock_for_claim(candidates: Select[Any]) -> Select[Any]:
    """Make the claim's candidate query skip rows another worker is claiming.

    PostgreSQL renders ``FOR UPDATE SKIP LOCKED``; SQLite renders nothing and needs nothing,
    because its claim runs in a ``BEGIN IMMEDIATE`` transaction that already excludes writers."""
    return candidates.with_for_update(skip_locked=True)


class Database:
    """One engine with two kinds of session: reads (one snapshot) and writes (immediate)."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        read_engine = self.engine
        if self.engine.dialect.name == "postgresql":
            read_engine = self.engine.execution_options(isolation_level="REPEATABLE READ")
        self._read = sessionmaker(read_engine, expire_on_commit=False)
        write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        self._write = sessionmaker(write_engine, expire_on_commit=False)

    def reader(self) -> Session:
        """A session for reads that sees one snapshot of the database until it ends."""
        return self._read()

    def writer(self) -> Session:
        """A session whose transaction takes the write lock up front; the caller commits."""
        return self._write()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction committed on success, rolled back on an exception."""
        with self._write.begin() as session:
            yield session

    def upgrade(self) -> None:
        """Bring the schema to the newest migration; safe when several processes start at once."""
        with self.engine.connect().execution_options(**{_IMMEDIATE: True}) as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                # A migration that rebuilds a table (Alembic batch mode) drops the old one; with
                # foreign keys on, that deletes every row referencing it (ON DELETE CASCADE).
                # Off for the upgrade, set outside a transaction (SQLite ignores it inside one).
                conn.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")
            try:
                with conn.begin():
                    # One transaction for the whole upgrade holds the write lock, so concurrent
                    # starters wait for the first one and then find the schema at head.
                    if conn.dialect.name == "postgresql":
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})")
                    config = alembic_config(self.engine.url.render_as_string(hide_password=False))
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
                    if sqlite:
                        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                        if broken:
                            raise RuntimeError(f"migration broke foreign keys: {broken[:5]}")
            finally:
                if sqlite:
                    conn.connection.driver_connection.execute("PRAGMA foreign_keys = ON")

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config(MIGRATIONS_DIR / "alembic.ini")
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
