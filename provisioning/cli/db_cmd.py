"""``zanuo db upgrade|current``: schema migrations."""

from __future__ import annotations

import argparse

from provisioning.cli.common import SubParsers
from provisioning.config import Secrets, Settings
from provisioning.storage.engine import Database


def register(sub: SubParsers) -> None:
    """Add the ``db`` commands."""
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply migrations up to the newest revision")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(handler=upgrade_db)
    current = db_sub.add_parser("current", help="print the applied revision")
    current.set_defaults(handler=current_db)


async def upgrade_db(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Apply migrations."""
    db = Database(settings.database_url)
    try:
        await db.upgrade(args.revision)
        print(f"database at revision {await db.current_revision()}")
    finally:
        await db.dispose()
    return 0


async def current_db(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Print the applied revision."""
    db = Database(settings.database_url)
    try:
        print(await db.current_revision() or "empty")
    finally:
        await db.dispose()
    return 0
