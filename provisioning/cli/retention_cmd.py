"""``zanuo retention run``: one retention pass, printing what it deleted."""

from __future__ import annotations

import argparse

from provisioning.cli.common import SubParsers, prepare_database
from provisioning.config import Secrets, Settings
from provisioning.services import open_services


def register(sub: SubParsers) -> None:
    """Add the ``retention`` commands."""
    retention = sub.add_parser("retention", help="data retention")
    retention_sub = retention.add_subparsers(dest="retention_command", required=True)
    run = retention_sub.add_parser("run", help="apply every retention rule once")
    run.set_defaults(handler=run_retention)


async def run_retention(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Run one pass and print the counts."""
    await prepare_database(settings)
    async with open_services(settings, secrets) as services:
        done = await services.retention.run()
    width = max(len(name) for name in done)
    for name, count in done.items():
        print(f"{name:<{width}}  {count} deleted or closed")
    return 0
