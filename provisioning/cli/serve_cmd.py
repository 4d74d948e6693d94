"""``zanuo serve``: run the API (and, later, the bridge and its broker)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from aiohttp import web

from provisioning.api.middleware import AccessLogger
from provisioning.app import create_app
from provisioning.cli.common import SubParsers
from provisioning.config import Secrets, Settings
from provisioning.errors import ConfigError
from provisioning.storage.engine import Database

_LOGGER = logging.getLogger(__name__)


def register(sub: SubParsers) -> None:
    """Add the ``serve`` command."""
    serve = sub.add_parser("serve", help="run the service")
    serve.set_defaults(handler=serve_forever)


async def prepare_database(settings: Settings) -> None:
    """Upgrade the embedded SQLite; require an up-to-date schema elsewhere."""
    db = Database(settings.database_url)
    try:
        if db.is_sqlite:
            await db.upgrade()
            return
        head = await db.current_revision()
        if head is None:
            raise ConfigError(
                "the database has no schema yet: run `zanuo db upgrade`", key="database.url"
            )
    finally:
        await db.dispose()


async def serve_forever(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Serve until SIGINT or SIGTERM."""
    await prepare_database(settings)
    app = create_app(settings, secrets)
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, settings.server.host, settings.server.port)
    await site.start()
    _LOGGER.info("serving on http://%s:%s", settings.server.host, settings.server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        _LOGGER.info("shutting down")
        await runner.cleanup()
    return 0
