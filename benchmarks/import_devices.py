"""Measure ``zanuo devices import``: rows/s for a factory file of real per-device CSRs.

Run: ``.venv/bin/python benchmarks/import_devices.py [--rows 100000] [--workers N]``

The rows are what real manufacturing sends: every device made its own P-256
key and hands over only a CSR, so the import checks and signs one CSR per row.
The file is generated once into a temp directory (CSRs in worker processes;
not timed), then the real command path runs: ``zanuo ca init`` and
``zanuo devices import FILE`` through ``provisioning.cli.main`` on a fresh
SQLite data dir. The re-run of the same file (a no-op)
is timed too.

Baseline, in the same run: a raw batched ``INSERT`` (1,000 rows per batch) of
the same rows into a fresh database, with no validation, no CSR check and no
signing (the certificate column carries the CSR text, so rows have the same
size). The ratio says what validation + signing cost over storage alone.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import insert

from provisioning import cli
from provisioning.storage.base import Base
from provisioning.storage.devices import Device
from provisioning.storage.engine import Database

BATCH = 1000


def _serial(index: int) -> str:
    return f"ZC1-{index:07d}"


def _rows(start: int, stop: int) -> list[str]:
    """Return JSON Lines for devices ``start..stop``, each with its own key's CSR."""
    lines = []
    for i in range(start, stop):
        serial = _serial(i)
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode("ascii")
        )
        row = {
            "serial": serial,
            "model": "CAM-100",
            "type": "camera",
            "capabilities": ["wifi", "ble"],
            # A benchmark file, never a real label: a fixed code keeps it simple.
            "label_code": "QWERTY",
            "ble_mac": f"02:00:00:{i >> 16 & 0xFF:02X}:{i >> 8 & 0xFF:02X}:{i & 0xFF:02X}",
            "firmware_version": "1.4.2",
            "csr": csr,
        }
        lines.append(json.dumps(row) + "\n")
    return lines


def generate_file(path: Path, count: int, workers: int) -> None:
    """Write ``count`` rows with per-device CSRs, generated in worker processes."""
    chunks = [(start, min(start + 5000, count)) for start in range(0, count, 5000)]
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
        path.open("w", encoding="utf-8") as handle,
    ):
        for lines in pool.map(_rows, *zip(*chunks, strict=True)):
            handle.writelines(lines)


def run_cli(data_dir: Path, *args: str) -> float:
    """Run one ``zanuo`` command on ``data_dir`` (SQLite); return its wall time in seconds."""
    os.environ["ZANUO_PATHS__DATA_DIR"] = str(data_dir)
    started = time.perf_counter()
    status = cli.main(["--log-level", "WARNING", *args])
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"zanuo {' '.join(args)} exited with {status}")
    return elapsed


async def baseline_insert(path: Path, database_url: str) -> float:
    """Insert the same rows raw (batched, no validation, no signing); return seconds."""
    db = Database(database_url)
    try:
        await db.upgrade()
        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        with path.open(encoding="utf-8") as handle:
            for index, line in enumerate(handle):
                row = json.loads(line)
                batch.append(
                    {
                        "serial": row["serial"],
                        "model": row["model"],
                        "device_type": row["type"],
                        "capabilities": row["capabilities"],
                        "label_code_digest": None,
                        "ble_mac": row["ble_mac"],
                        "firmware_version": row["firmware_version"],
                        "certificate_pem": row["csr"],
                        "certificate_fingerprint": f"{index:064x}",
                        "certificate_serial": f"{index:x}",
                        "import_digest": f"{index:064x}",
                        "imported_at": now,
                        "online": False,
                    }
                )
                if len(batch) == BATCH:
                    async with db.session() as session, session.begin():
                        await session.execute(
                            insert(Base.metadata.tables[Device.__tablename__]), batch
                        )
                    batch = []
        if batch:
            async with db.session() as session, session.begin():
                await session.execute(insert(Base.metadata.tables[Device.__tablename__]), batch)
        return time.perf_counter() - started
    finally:
        await db.dispose()


def main() -> int:
    """Generate the file, run the import twice and the baseline once, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=None, help="signing processes")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="zanuo-bench-") as tmp:
        root = Path(tmp)
        factory = root / "factory.jsonl"
        started = time.perf_counter()
        generate_file(factory, args.rows, cpus)
        print(
            f"generated {args.rows} rows with per-device CSRs in "
            f"{time.perf_counter() - started:.1f} s ({factory.stat().st_size / 1e6:.0f} MB)",
            file=sys.stderr,
        )
        data_dir = root / "data"
        run_cli(data_dir, "ca", "init")
        workers = ["--workers", str(args.workers)] if args.workers else []
        first = run_cli(data_dir, "devices", "import", str(factory), *workers)
        again = run_cli(data_dir, "devices", "import", str(factory), *workers)
        baseline_url = f"sqlite+aiosqlite:///{root / 'baseline' / 'zanuo.db'}"
        raw = asyncio.run(baseline_insert(factory, baseline_url))
    print()
    print(f"rows:                      {args.rows} ({cpus} CPUs)")
    print(f"import (check + sign):     {first:.1f} s  {args.rows / first:,.0f} rows/s")
    print(f"re-run (no-op):            {again:.1f} s  {args.rows / again:,.0f} rows/s")
    print(f"baseline raw INSERT:       {raw:.1f} s  {args.rows / raw:,.0f} rows/s")
    print(f"import / baseline time:    {first / raw:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
