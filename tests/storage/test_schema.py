"""The schema: migrations match the models, every column is catalogued, SQLite runs in WAL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

import provisioning.storage.all_models  # noqa: F401  (registers every table)
from provisioning.storage.base import Base
from provisioning.storage.catalog import column_class
from provisioning.storage.engine import Database


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_produce_exactly_the_models(database: Database) -> None:
    async with database.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], "models and migrations differ: run scripts/make_migration.py"


def test_every_column_declares_category_and_retention() -> None:
    missing = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column_class(column.info) is None
    ]
    assert missing == []


def test_encrypted_columns_are_binary() -> None:
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            entry = column_class(column.info)
            if entry is not None and entry.encrypted:
                assert column.type.python_type is bytes, f"{table.name}.{column.name}"


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(database: Database) -> None:
    if not database.is_sqlite:
        return
    async with database.engine.connect() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
