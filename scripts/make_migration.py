"""Autogenerate an Alembic revision from the models: scripts/make_migration.py "message"."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy.engine import Connection

from provisioning.storage.engine import Database, alembic_config


def _revision(connection: Connection, message: str) -> None:
    command.revision(alembic_config(connection), message=message, autogenerate=True)


async def _main(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'gen.db'}")
        await db.upgrade()
        async with db.engine.begin() as conn:
            await conn.run_sync(_revision, message)
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1] if len(sys.argv) > 1 else "schema change"))
