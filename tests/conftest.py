"""Fixtures shared by the whole suite: settings, databases, the app over real HTTP.

The database backend is SQLite unless ``PYTEST_ZANUO_DATABASE_URL`` names a
PostgreSQL server (``postgresql+asyncpg://user@host:port/``); then a scratch
database is created for the run and dropped after it. With ``CI=true`` an
unreachable PostgreSQL fails the run instead of skipping anything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets as pysecrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from sqlalchemy import text

from provisioning.api.middleware import AccessLogger
from provisioning.app import create_app
from provisioning.clock import FrozenClock
from provisioning.config import Secrets, Settings, load_secrets, load_settings
from provisioning.notify.delivery import Notifier, OutboxSender
from provisioning.security.passwords import Passwords
from provisioning.services import Services, open_services
from provisioning.storage.base import Base
from provisioning.storage.engine import Database

pytest_plugins = ["tests.fixtures.mosquitto", "tests.fixtures.devices"]

PG_ENV = "PYTEST_ZANUO_DATABASE_URL"


def _pg_base_url() -> str | None:
    return os.environ.get(PG_ENV) or None


async def _pg_admin(base_url: str, statement: str) -> None:
    import asyncpg

    dsn = base_url.replace("postgresql+asyncpg://", "postgresql://").rstrip("/") + "/postgres"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return the URL of a migrated scratch database for the run (PostgreSQL) or None."""
    base = _pg_base_url()
    if base is None:
        yield ""
        return
    name = f"zanuo_test_{pysecrets.token_hex(4)}"
    try:
        asyncio.run(_pg_admin(base, f'CREATE DATABASE "{name}"'))
    except OSError as err:  # pragma: no cover - only when the server is down
        pytest.exit(f"PostgreSQL at {base} is unreachable: {err}", returncode=3)
    url = base.rstrip("/") + "/" + name
    db = Database(url)

    async def _migrate() -> None:
        await db.upgrade()
        await db.dispose()

    asyncio.run(_migrate())
    yield url
    asyncio.run(_pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Return a fresh data directory."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path, database_url: str) -> Settings:
    """Return settings on a fresh data dir (and the run's database when it is PostgreSQL)."""
    env = {
        "ZANUO_PATHS__DATA_DIR": str(data_dir),
        "ZANUO_SERVER__PORT": "0",
    }
    if database_url:
        env["ZANUO_DATABASE__URL"] = database_url
    return load_settings(environ=env)


@pytest.fixture
def secrets(settings: Settings) -> Secrets:
    """Return freshly generated secrets for the test."""
    return load_secrets(settings, environ={}, generate=True)


@pytest.fixture
def clock() -> FrozenClock:
    """Return a clock that only moves when the test moves it."""
    return FrozenClock(dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC))


@pytest.fixture
def passwords() -> Passwords:
    """Return real Argon2id with test-sized cost (the algorithm is unchanged)."""
    return Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def outbox(data_dir: Path) -> OutboxSender:
    """Return the development outbox the codes are delivered to."""
    return OutboxSender(data_dir / "outbox.jsonl")


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """Return a migrated, empty database."""
    db = Database(settings.database_url)
    if db.is_sqlite:
        await db.upgrade()
    else:
        async with db.engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
    yield db
    await db.dispose()


@pytest.fixture
async def services(
    settings: Settings,
    secrets: Secrets,
    clock: FrozenClock,
    passwords: Passwords,
    outbox: OutboxSender,
    database: Database,
) -> AsyncIterator[Services]:
    """Return the service graph on the test's database, clock and outbox."""
    async with open_services(
        settings, secrets, clock=clock, passwords=passwords, notifier=Notifier(outbox, outbox)
    ) as opened:
        yield opened


@pytest.fixture
async def app(services: Services, settings: Settings, secrets: Secrets) -> web.Application:
    """Return the application using the test's services."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def given() -> AsyncIterator[Services]:
        yield services

    return create_app(settings, secrets, services=given)


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient[Any, Any]]:
    """Return an HTTP client talking to the app over a real loopback socket."""
    server = TestServer(app)
    # The production access logger (no query strings, no bodies), as `zanuo serve` runs it.
    await server.start_server(access_log_class=AccessLogger)
    async with TestClient(server) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    for _ in range(20):
        leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"test leaked tasks: {leaked!r}")


@pytest.fixture(autouse=True)
def _no_leaked_log_handlers() -> Iterator[None]:
    """Remove the handler a CLI run installs, so later tests never write to a closed stream."""
    import logging

    before = set(logging.getLogger().handlers)
    yield
    root = logging.getLogger()
    for handler in set(root.handlers) - before:
        if getattr(handler, "_zanuo_handler", False):
            root.removeHandler(handler)
            handler.close()
