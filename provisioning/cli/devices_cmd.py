"""``zanuo devices import|revoke|show``: the factory registry from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from provisioning.cli.common import SubParsers, prepare_database
from provisioning.clock import Clock, SystemClock
from provisioning.config import Secrets, Settings
from provisioning.domain.registry import (
    CaPaths,
    CrlOutcome,
    DeviceRegistry,
    ImportFormat,
    ImportProgress,
    RegistryError,
    device_certificate,
    find_managed_broker,
    is_bindable,
)
from provisioning.security.ca import write_file_atomically
from provisioning.security.crl import REASONS
from provisioning.storage.engine import Database

BAR_WIDTH = 30
_STEP_LABELS = {"read": "reading", "check": "checking CSRs", "import": "importing"}


def register(sub: SubParsers) -> None:
    """Add the ``devices`` commands."""
    devices = sub.add_parser("devices", help="the factory device registry")
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)

    imp = devices_sub.add_parser(
        "import", help="import a factory file (JSON Lines or CSV); re-importing is a no-op"
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--format", choices=[f.value for f in ImportFormat], default=None)
    imp.add_argument(
        "--skip-invalid",
        action="store_true",
        help="store the valid rows and list the invalid ones in --report",
    )
    imp.add_argument("--report", type=Path, default=None, help="JSON Lines file of invalid rows")
    imp.add_argument(
        "--generate-into",
        type=Path,
        default=None,
        metavar="DIR",
        help="simulate manufacturing: make key, certificate and label code in DIR/<serial>/",
    )
    imp.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="FILE",
        help="write the generated label payloads to FILE instead of stdout",
    )
    imp.add_argument(
        "--workers", type=int, default=None, help="signing processes (default: one per CPU)"
    )
    imp.set_defaults(handler=import_devices)

    revoke = devices_sub.add_parser(
        "revoke", help="revoke a device's certificate, rewrite the CRL and reload the broker"
    )
    revoke.add_argument("serial")
    revoke.add_argument("--reason", required=True, choices=sorted(REASONS))
    revoke.set_defaults(handler=revoke_device)

    show = devices_sub.add_parser("show", help="show a registered device (no secrets)")
    show.add_argument("serial")
    show.set_defaults(handler=show_device)


@asynccontextmanager
async def open_registry(
    settings: Settings, secrets: Secrets, *, clock: Clock | None = None
) -> AsyncIterator[DeviceRegistry]:
    """Open the database (migrating embedded SQLite) and the registry over it."""
    await prepare_database(settings)
    clock = clock or SystemClock()
    paths = CaPaths.in_data_dir(settings.data_dir)
    db = Database(settings.database_url, pool_size=settings.database.pool_size)
    try:
        yield DeviceRegistry(
            db=db,
            clock=clock,
            pepper=secrets.pepper.get_secret_value(),
            paths=paths,
            ca_passphrase=secrets.ca_passphrase.get_secret_value(),
            broker=find_managed_broker(paths, clock),
        )
    finally:
        await db.dispose()


class ProgressBar:
    """A plain-text ``\\r`` progress bar (no dependency), redrawn at most every 0.1 s."""

    def __init__(self, stream: TextIO, *, interval: float = 0.1) -> None:
        self._stream = stream
        self._interval = interval
        self._last = 0.0
        self._step: str | None = None
        self._started = time.perf_counter()

    def __call__(self, progress: ImportProgress) -> None:
        """Draw one update."""
        now = time.perf_counter()
        finished = progress.done >= progress.total
        if progress.step != self._step:
            if self._step is not None:
                self._stream.write("\n")
                # A step starts when the one before it ended.
                self._started = self._last
            self._step, self._last = progress.step, 0.0
        elif not finished and now - self._last < self._interval:
            return
        self._last = now
        total = max(progress.total, 1)
        filled = BAR_WIDTH * progress.done // total
        elapsed = max(now - self._started, 1e-9)
        self._stream.write(
            f"\r{_STEP_LABELS.get(progress.step, progress.step):<13} "
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{100 * progress.done // total:3d}% {progress.done}/{progress.total} "
            f"{progress.done / elapsed:,.0f} rows/s"
        )
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        if self._step is not None:
            self._stream.write("\n")
            self._stream.flush()


async def import_devices(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Import a factory file with a progress bar; print label payloads and a summary."""
    if args.skip_invalid and args.report is None:
        raise RegistryError("--skip-invalid needs --report FILE so no skipped row goes unnoticed")
    bar = ProgressBar(sys.stderr)
    async with open_registry(settings, secrets) as registry:
        try:
            summary = await registry.import_file(
                args.file,
                fmt=ImportFormat(args.format) if args.format else None,
                skip_invalid=args.skip_invalid,
                report=args.report,
                generate_into=args.generate_into,
                progress=bar,
                workers=args.workers,
            )
        finally:
            bar.close()
    if summary.label_payloads:
        text = "".join(payload + "\n" for payload in summary.label_payloads)
        if args.labels is not None:
            # The label printer's input: it holds codes, so owner-only.
            write_file_atomically(args.labels, text.encode())
        else:
            sys.stdout.write(text)
    print(
        f"{summary.rows} rows in {summary.elapsed:.1f} s ({summary.rows_per_second:,.0f} rows/s): "
        f"{summary.imported} imported, {summary.unchanged} unchanged, {summary.invalid} invalid",
        file=sys.stderr,
    )
    if summary.invalid:
        print(f"invalid rows are listed in {args.report}", file=sys.stderr)
    return 0


def print_crl_outcome(outcome: CrlOutcome, paths: CaPaths) -> int:
    """Tell what happened to the CRL and the broker; 1 when the broker did not reload."""
    crl = outcome.crl
    print(
        f"CRL #{crl.number} with {crl.revoked_count} revoked certificate(s) written to "
        f"{crl.path}, next update {crl.next_update.isoformat()}"
    )
    if outcome.broker_reloaded:
        print("the managed broker reloaded the CRL")
        return 0
    if outcome.broker_error is not None:
        print(f"zanuo: the broker did not reload: {outcome.broker_error}", file=sys.stderr)
        return 1
    print(
        f"no managed broker is running (no live {paths.broker_pid_file}); send SIGHUP to your "
        "broker so it loads the new CRL"
    )
    return 0


async def revoke_device(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Revoke one device."""
    async with open_registry(settings, secrets) as registry:
        outcome = await registry.revoke(args.serial, args.reason)
    state = "was already revoked" if outcome.already_revoked else "revoked"
    print(f"{outcome.serial} {state} ({outcome.reason}) at {outcome.revoked_at.isoformat()}")
    return print_crl_outcome(outcome.crl, registry.paths)


async def show_device(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Print a registered device: identity, certificate fingerprint, status (no secrets)."""
    async with open_registry(settings, secrets) as registry:
        device = await registry.get(args.serial)
    certificate = device_certificate(device)
    lines = [
        ("serial", device.serial),
        ("model", device.model),
        ("type", device.device_type),
        ("capabilities", ", ".join(device.capabilities) or "-"),
        ("label code", "yes" if device.label_code_digest is not None else "no (pairing token)"),
        ("ble mac", device.ble_mac or "-"),
        ("firmware", device.firmware_version),
        ("certificate", f"sha256 {device.certificate_fingerprint}"),
        ("cert serial", device.certificate_serial),
        ("valid until", certificate.not_valid_after_utc.isoformat()),
        ("imported at", device.imported_at.isoformat()),
        ("status", "active" if is_bindable(device) else "revoked"),
    ]
    if device.revoked_at is not None:
        lines.append(("revoked at", device.revoked_at.isoformat()))
        lines.append(("reason", device.revoked_reason or "unspecified"))
    for name, value in lines:
        print(f"{name + ':':<14}{value}")
    return 0
