"""Simulated manufacturing (--generate-into): flash folders, label codes, nothing secret stored."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from provisioning.domain.registry import DEVICE_INFO_FILE, DeviceRegistry, device_public_key
from provisioning.security import ca as device_ca
from provisioning.security.codes import parse_label_payload
from provisioning.services import Services
from provisioning.storage.base import Base
from tests.registry.factory import camera_row, serial_of, write_jsonl

FLASH_FILES = {"device.key.pem", "device.crt.pem", "ca.crt.pem", DEVICE_INFO_FILE}


def _fleet(count: int) -> list[dict[str, Any]]:
    """Return cameras, locks and hubs without CSRs, each code rule represented."""
    rows = []
    for i in range(count):
        row = camera_row(i)
        row.pop("label_code")  # the type decides
        if i % 4 == 1:
            row.update(type="lock", model="LOCK-2", capabilities=["ble"])
        elif i % 4 == 2:
            row.update(type="hub", model="HUB-1", capabilities=["wifi", "ble_hub"])
        elif i % 4 == 3:
            row["label_code"] = None  # this camera has no code on its label
        rows.append(row)
    rows[0]["label_code"] = "QWERTY"  # the factory printed this one
    return rows


def _flash(flash_dir: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(flash_dir)): path.read_bytes()
        for path in sorted(flash_dir.rglob("*"))
        if path.is_file()
    }


async def test_generate_into_writes_flash_folders_and_returns_label_payloads(
    registry: DeviceRegistry, services: Services, flash_dir: Path, tmp_path: Path
) -> None:
    rows = _fleet(8)
    summary = await registry.import_file(
        write_jsonl(tmp_path / "factory.jsonl", rows), generate_into=flash_dir
    )

    assert summary.imported == 8
    payloads = {p.serial: p for p in map(parse_label_payload, summary.label_payloads)}
    assert set(payloads) == {serial_of(i) for i in range(8)}
    assert payloads[serial_of(0)].code == "QWERTY"
    for i in range(8):
        serial = serial_of(i)
        folder = flash_dir / serial
        assert {p.name for p in folder.iterdir()} == FLASH_FILES
        info = json.loads((folder / DEVICE_INFO_FILE).read_text())
        assert info["label_payload"] == payloads[serial].format()
        assert info["label_code"] == payloads[serial].code
        device = await registry.get(serial)
        expects_code = i % 4 in (0, 2)  # cameras with a code, hubs; never locks
        assert (payloads[serial].code is not None) == expects_code
        assert (device.label_code_digest is not None) == expects_code
        if expects_code:
            assert registry.verify_code(device, info["label_code"])
        key = serialization.load_pem_private_key((folder / "device.key.pem").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key() == device_public_key(device)
        assert (folder / "device.crt.pem").read_bytes().decode() == device.certificate_pem
        assert (folder / "device.key.pem").stat().st_mode & 0o077 == 0


async def test_rerun_of_simulated_manufacturing_regenerates_nothing(
    registry: DeviceRegistry, services: Services, flash_dir: Path, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "factory.jsonl", _fleet(8))
    await registry.import_file(path, generate_into=flash_dir)
    flash = _flash(flash_dir)
    stored = [await registry.get(serial_of(i)) for i in range(8)]

    rerun = await registry.import_file(path, generate_into=flash_dir)

    assert (rerun.imported, rerun.unchanged, rerun.label_payloads) == (0, 8, ())
    assert _flash(flash_dir) == flash
    again = [await registry.get(serial_of(i)) for i in range(8)]
    assert [d.certificate_fingerprint for d in again] == [d.certificate_fingerprint for d in stored]
    assert [d.label_code_digest for d in again] == [d.label_code_digest for d in stored]


async def test_simulated_manufacturing_in_worker_processes_matches_one_thread(
    registry: DeviceRegistry, services: Services, flash_dir: Path, tmp_path: Path
) -> None:
    summary = await registry.import_file(
        write_jsonl(tmp_path / "factory.jsonl", _fleet(12)),
        generate_into=flash_dir,
        workers=2,
        batch_size=5,
    )
    assert summary.imported == 12
    for i in range(12):
        device = await registry.get(serial_of(i))
        certificate = device_ca.read_certificate(flash_dir / serial_of(i) / "device.crt.pem")
        assert device.certificate_fingerprint == device_ca.certificate_fingerprint(certificate)


async def _table_dump(services: Services) -> bytes:
    """Return every stored value of every table as bytes (what an export or dump would hold)."""
    chunks: list[bytes] = []
    async with services.db.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                for value in row:
                    if isinstance(value, bytes):
                        chunks += [value, value.hex().encode()]
                    elif value is not None:
                        chunks.append(str(value).encode())
    return b"\n".join(chunks)


def _secrets_of(flash_dir: Path, serials: list[str], codes: list[str]) -> list[bytes]:
    """Return every form of the generated codes and private keys a store could hold."""
    found: list[bytes] = []
    for code in codes:
        found += [code.encode(), code.encode("utf-16-le"), code.encode().hex().encode()]
    for serial in serials:
        pem = (flash_dir / serial / "device.key.pem").read_bytes()
        key = serialization.load_pem_private_key(pem, None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        body = b"".join(pem.splitlines()[1:-1])
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        found += [body, body[:40], der, key.private_numbers().private_value.to_bytes(32, "big")]
    return found


async def _import_fleet(
    registry: DeviceRegistry, flash_dir: Path, tmp_path: Path
) -> tuple[list[str], list[bytes]]:
    summary = await registry.import_file(
        write_jsonl(tmp_path / "factory.jsonl", _fleet(40)), generate_into=flash_dir
    )
    codes = [p.code for p in map(parse_label_payload, summary.label_payloads) if p.code]
    assert len(codes) >= 20
    serials = [serial_of(i) for i in range(40)]
    return serials, _secrets_of(flash_dir, serials, codes)


async def test_stored_rows_hold_no_label_code_and_no_private_key(
    registry: DeviceRegistry,
    services: Services,
    flash_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    serials, secrets = await _import_fleet(registry, flash_dir, tmp_path)

    dump = await _table_dump(services)

    assert serials[0].encode() in dump  # the dump sees what was stored
    assert [secret for secret in secrets if secret in dump] == []
    assert b"PRIVATE KEY" not in dump
    logged = caplog.text.encode()
    assert [secret for secret in secrets if secret in logged] == []


@pytest.mark.sqlite_only
async def test_sqlite_files_and_wal_hold_no_label_code_and_no_private_key(
    registry: DeviceRegistry, services: Services, flash_dir: Path, tmp_path: Path
) -> None:
    serials, secrets = await _import_fleet(registry, flash_dir, tmp_path)
    if not services.db.is_sqlite:
        # PostgreSQL keeps no file of ours to scan; the dump test above covers it.
        return
    database = Path(str(services.db.url.database))
    files = [p for p in database.parent.glob(database.name + "*") if p.is_file()]
    assert database in files
    assert any(p.name.endswith("-wal") for p in files)
    raw = b"".join(p.read_bytes() for p in files)
    assert serials[0].encode() in raw  # the scan sees what was stored
    assert [secret for secret in secrets if secret in raw] == []
    assert b"PRIVATE KEY" not in raw
