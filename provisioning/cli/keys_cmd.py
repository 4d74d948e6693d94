"""``zanuo keys rotate``: re-wrap every account data key under the active KEK."""

from __future__ import annotations

import argparse

from provisioning.cli.common import SubParsers, prepare_database
from provisioning.config import Secrets, Settings
from provisioning.services import open_services


def register(sub: SubParsers) -> None:
    """Add the ``keys`` commands."""
    keys = sub.add_parser("keys", help="key-encryption keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser(
        "rotate", help="re-wrap data keys under the active KEK (add a new KEK to the secrets first)"
    )
    rotate.set_defaults(handler=rotate_keys)


async def rotate_keys(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Re-wrap every data key and print how many changed."""
    await prepare_database(settings)
    async with open_services(settings, secrets) as services, services.db.session() as session:
        changed = await services.vault.rotate(session, services.clock.now())
        await session.commit()
    print(f"re-wrapped {changed} account keys under {secrets.active_kek}")
    return 0
