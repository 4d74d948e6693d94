"""The async engine, session factory and schema migrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_only

from provisioning.errors import ServiceUnavailable

_LOGGER = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; foreign keys are off by
    # default in SQLite; busy_timeout waits for the writer instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Deleted rows are overwritten, not left in free pages: erasure means erased.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


_QUEUE_TIMEOUT = 30.0


class _SqliteWriterQueue:
    """Queues this process's transactions in asyncio before SQLite's write lock.

    pysqlite's own transaction handling is off (isolation_level=None), so we
    emit BEGIN IMMEDIATE ourselves: every transaction takes the write lock up
    front and never fails with "database is locked" when a read lock tries to
    upgrade. Concurrent transactions of one process wait on an asyncio lock
    first (first come, first served) instead of spinning in SQLite's busy
    handler, whose sleeps grow to 100 ms; busy_timeout still covers other
    processes (the CLI beside a running service).
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    def begin(self, conn: Connection) -> None:
        """Take the queue, then SQLite's write lock."""
        # As long as busy_timeout: a transaction that waits on another one
        # held by the same task (a bug) fails instead of hanging for ever.
        await_only(asyncio.wait_for(self._lock.acquire(), _QUEUE_TIMEOUT))
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise

    def end(self, conn: Connection) -> None:
        """Let the next transaction in."""
        if self._lock.locked():
            self._lock.release()


class Database:
    """One engine and its session factory for a process."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"isolation_level": None, "timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            queue = _SqliteWriterQueue()
            event.listen(self.engine.sync_engine, "begin", queue.begin)
            event.listen(self.engine.sync_engine, "commit", queue.end)
            event.listen(self.engine.sync_engine, "rollback", queue.end)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """Open one session (one unit of work) and close it after."""
        async with self.sessions() as session:
            yield session

    async def ping(self) -> None:
        """Check the database answers; raise ServiceUnavailable when it does not."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as err:
            raise ServiceUnavailable("database unreachable") from err

    async def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision``."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_alembic, "upgrade", revision)

    async def downgrade(self, revision: str) -> None:
        """Revert migrations down to ``revision``."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_run_alembic, "downgrade", revision)

    async def current_revision(self) -> str | None:
        """Return the applied migration revision, if any."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def alembic_config(connection: Connection | None = None) -> AlembicConfig:
    """Return the Alembic config for the project's migrations."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _run_alembic(connection: Connection, action: str, revision: str) -> None:
    cfg = alembic_config(connection)
    if action == "upgrade":
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
