"""``zanuo config show``: the effective configuration with secrets redacted."""

from __future__ import annotations

import argparse
import json

from provisioning.cli.common import SubParsers
from provisioning.config import Secrets, Settings, redacted_view


def register(sub: SubParsers) -> None:
    """Add the ``config`` commands."""
    config = sub.add_parser("config", help="inspect configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    show = config_sub.add_parser("show", help="print the effective configuration, secrets redacted")
    show.set_defaults(handler=show_config)


def show_config(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Print the effective configuration as JSON."""
    print(json.dumps(redacted_view(settings, secrets), indent=2))
    return 0
