"""What every subcommand shares: loading settings and secrets, running a coroutine."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from provisioning.config import Secrets, Settings, load_secrets, load_settings
from provisioning.logs import configure_logging

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
