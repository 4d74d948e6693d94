"""What every subcommand shares: loading settings and secrets, running a coroutine."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from provisioning.config import Secrets, Settings, load_secrets, load_settings
from provisioning.errors import ConfigError
from provisioning.logs import configure_logging
from provisioning.storage.engine import Database

Command = Callable[[argparse.Namespace, Settings, Secrets], Awaitable[int] | int]
SubParsers = Any  # argparse's _SubParsersAction is private


def load(args: argparse.Namespace) -> tuple[Settings, Secrets]:
    """Load settings and secrets for a command (secrets generated in development)."""
    settings = load_settings(Path(args.config) if args.config else None)
    return settings, load_secrets(settings)


def run_command(args: argparse.Namespace) -> int:
    """Dispatch to the chosen subcommand."""
    configure_logging(args.log_level)
    settings, secrets = load(args)
    result = args.handler(args, settings, secrets)
    if asyncio.iscoroutine(result):
        return int(asyncio.run(result))
    return int(result)


async def prepare_database(settings: Settings) -> None:
    """Upgrade the embedded SQLite; require an up-to-date schema elsewhere."""
    db = Database(settings.database_url)
    try:
        if db.is_sqlite:
            await db.upgrade()
            return
        if await db.current_revision() is None:
            raise ConfigError(
                "the database has no schema yet: run `zanuo db upgrade`", key="database.url"
            )
    finally:
        await db.dispose()
