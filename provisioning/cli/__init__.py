"""The ``zanuo`` command: the composition root that wires every part together."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from provisioning.cli import (
    bridge_cmd,
    ca_cmd,
    config_cmd,
    db_cmd,
    demo_cmd,
    devices_cmd,
    keys_cmd,
    retention_cmd,
    serve_cmd,
    simulate_cmd,
)
from provisioning.cli.common import run_command
from provisioning.errors import ZanuoError

GROUPS = (
    serve_cmd,
    config_cmd,
    db_cmd,
    ca_cmd,
    devices_cmd,
    retention_cmd,
    keys_cmd,
    bridge_cmd,
    simulate_cmd,
    demo_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="zanuo", description="Zanuo Cloud device service")
    parser.add_argument(
        "--config", type=str, default=None, help="TOML file overriding the defaults"
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except ZanuoError as err:
        print(f"zanuo: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
