"""Factory import: progress, idempotent re-runs, all-or-nothing validation, skip-invalid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import func, select

from provisioning.domain.registry import (
    CaPaths,
    DeviceRegistry,
    FactoryFileInvalid,
    ImportProgress,
    ImportRejected,
    device_certificate,
)
from provisioning.security import ca as device_ca
from provisioning.security.errors import CaNotInitialized, CaUnreadable
from provisioning.services import Services
from provisioning.storage.devices import Device
from tests.registry.factory import (
    camera_row,
    csr_rows,
    device_csr,
    serial_of,
    write_csv,
    write_jsonl,
)

BAD_ROW = 3  # 1-based line of the bad row in a JSON Lines file


async def _snapshot(services: Services) -> list[tuple[Any, ...]]:
    async with services.db.session() as session:
        result = await session.execute(
            select(
                Device.serial,
                Device.certificate_fingerprint,
                Device.import_digest,
                Device.imported_at,
                Device.label_code_digest,
            ).order_by(Device.serial)
        )
        return [tuple(row) for row in result.all()]


async def _count(services: Services) -> int:
    async with services.db.session() as session:
        return int((await session.scalar(select(func.count()).select_from(Device))) or 0)


async def test_import_of_thousands_of_rows_reports_progress_and_a_rerun_changes_nothing(
    registry: DeviceRegistry, services: Services, premade_csrs: list[str], tmp_path: Path
) -> None:
    count = len(premade_csrs)
    path = write_jsonl(tmp_path / "factory.jsonl", csr_rows(count, premade_csrs))
    seen: list[ImportProgress] = []

    summary = await registry.import_file(path, progress=seen.append, batch_size=500)

    assert (summary.rows, summary.imported, summary.unchanged, summary.invalid) == (
        count,
        count,
        0,
        0,
    )
    assert summary.rows_per_second > 0
    steps = [p for p in seen if p.step == "import"]
    assert [p.done for p in steps] == list(range(0, count + 1, 500))
    assert {p.total for p in steps} == {count}
    stored = await _snapshot(services)
    assert len(stored) == count

    again: list[ImportProgress] = []
    rerun = await registry.import_file(path, progress=again.append)

    assert (rerun.imported, rerun.unchanged, rerun.invalid) == (0, count, 0)
    assert await _snapshot(services) == stored
    assert not [p for p in again if p.step == "check" and p.total]


async def test_imported_certificate_names_the_serial_and_is_signed_by_the_device_ca(
    registry: DeviceRegistry, services: Services, premade_csrs: list[str], tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "factory.jsonl", csr_rows(2, premade_csrs))
    await registry.import_file(path)

    device = await registry.get(serial_of(1))
    certificate = device_certificate(device)
    device_ca.verify_issued_by(device_ca.read_certificate(registry.paths.ca_cert_file), certificate)
    cn = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == serial_of(1)
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert device.certificate_fingerprint == device_ca.certificate_fingerprint(certificate)
    assert device.certificate_serial == format(certificate.serial_number, "x")
    assert device.capabilities == ["wifi", "ble"]
    assert registry.verify_code(device, "abcdef ")
    assert not registry.verify_code(device, "ABCDEG")


def _bad(kind: str, rows: list[dict[str, Any]]) -> tuple[str, list[int]]:
    """Spoil row ``BAD_ROW`` (index 2) and return the field and the rows that become invalid."""
    row = rows[BAD_ROW - 1]
    if kind == "bad serial":
        row["serial"] = "zc1 bad/serial"
        return "serial", [BAD_ROW]
    if kind == "bad code alphabet":
        row["label_code"] = "ABC1E$"
        return "label_code", [BAD_ROW]
    if kind == "lower-case code":
        row["label_code"] = "abcdef"
        return "label_code", [BAD_ROW]
    if kind == "malformed CSR":
        row["csr"] = row["csr"].replace("A", "B", 3)
        return "csr", [BAD_ROW]
    if kind == "CSR of another serial":
        row["csr"] = rows[0]["csr"]
        return "csr", [BAD_ROW]
    if kind == "duplicate serial":
        row["serial"] = rows[5]["serial"]
        row["csr"] = rows[5]["csr"]
        return "serial", [BAD_ROW, 6]
    if kind == "unknown type":
        row["type"] = "toaster"
        return "type", [BAD_ROW]
    if kind == "unknown capability":
        row["capabilities"] = ["wifi", "zigbee"]
        return "capabilities", [BAD_ROW]
    if kind == "bad BLE MAC":
        row["ble_mac"] = "02:00:00:00:00"
        return "ble_mac", [BAD_ROW]
    if kind == "missing firmware":
        del row["firmware_version"]
        return "firmware_version", [BAD_ROW]
    raise AssertionError(kind)


BAD_KINDS = [
    "bad serial",
    "bad code alphabet",
    "lower-case code",
    "malformed CSR",
    "CSR of another serial",
    "duplicate serial",
    "unknown type",
    "unknown capability",
    "bad BLE MAC",
    "missing firmware",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
async def test_file_with_one_bad_row_imports_nothing_and_names_row_and_field(
    kind: str,
    registry: DeviceRegistry,
    services: Services,
    premade_csrs: list[str],
    tmp_path: Path,
) -> None:
    rows = csr_rows(10, premade_csrs)
    field, bad_rows = _bad(kind, rows)
    path = write_jsonl(tmp_path / "factory.jsonl", rows)

    with pytest.raises(ImportRejected) as caught:
        await registry.import_file(path)

    assert {(p.row, p.field) for p in caught.value.problems} == {(r, field) for r in bad_rows}
    assert f"row {BAD_ROW}, field {field}" in caught.value.message
    assert "nothing was imported" in caught.value.message
    assert await _count(services) == 0
    if "code" in kind:
        assert rows[BAD_ROW - 1]["label_code"] not in caught.value.message


@pytest.mark.parametrize("kind", BAD_KINDS)
async def test_skip_invalid_stores_the_rest_and_reports_the_bad_row(
    kind: str,
    registry: DeviceRegistry,
    services: Services,
    premade_csrs: list[str],
    tmp_path: Path,
) -> None:
    rows = csr_rows(10, premade_csrs)
    field, bad_rows = _bad(kind, rows)
    path = write_jsonl(tmp_path / "factory.jsonl", rows)
    report = tmp_path / "report.jsonl"

    summary = await registry.import_file(path, skip_invalid=True, report=report)

    assert summary.imported == 10 - len(bad_rows)
    assert summary.invalid == len(bad_rows)
    assert await _count(services) == 10 - len(bad_rows)
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["row"], line["field"]) for line in lines] == [(r, field) for r in bad_rows]
    assert all(set(line) == {"row", "field", "message"} for line in lines)
    text = report.read_text()
    assert "ABCDEF" not in text
    assert str(rows[BAD_ROW - 1].get("label_code")) not in text


async def test_csv_and_json_lines_of_the_same_rows_are_the_same_import(
    registry: DeviceRegistry, services: Services, premade_csrs: list[str], tmp_path: Path
) -> None:
    rows = csr_rows(5, premade_csrs)
    rows[1]["label_code"] = None
    rows[2].pop("label_code")
    rows[3].pop("ble_mac")
    first = await registry.import_file(write_csv(tmp_path / "factory.csv", rows))
    assert first.imported == 5

    rerun = await registry.import_file(write_jsonl(tmp_path / "factory.jsonl", rows))

    assert (rerun.imported, rerun.unchanged) == (0, 5)
    assert (await registry.get(serial_of(1))).label_code_digest is None
    assert (await registry.get(serial_of(2))).label_code_digest is None
    assert (await registry.get(serial_of(3))).ble_mac is None


async def test_csv_row_numbers_count_the_header_as_row_one(
    registry: DeviceRegistry, premade_csrs: list[str], tmp_path: Path
) -> None:
    rows = csr_rows(3, premade_csrs)
    rows[1]["model"] = "CAM 100"
    with pytest.raises(ImportRejected) as caught:
        await registry.import_file(write_csv(tmp_path / "factory.csv", rows))
    assert [(p.row, p.field) for p in caught.value.problems] == [(3, "model")]


async def test_csv_with_an_unknown_column_is_refused_as_a_whole(
    registry: DeviceRegistry, tmp_path: Path
) -> None:
    path = tmp_path / "factory.csv"
    path.write_text("serial,model,type,firmware_version,colour\n")
    with pytest.raises(FactoryFileInvalid, match="CSV header"):
        await registry.import_file(path)


async def test_row_conflicting_with_a_stored_device_is_an_error_not_an_overwrite(
    registry: DeviceRegistry, services: Services, premade_csrs: list[str], tmp_path: Path
) -> None:
    rows = csr_rows(4, premade_csrs)
    await registry.import_file(write_jsonl(tmp_path / "first.jsonl", rows))
    before = await _snapshot(services)
    rows[1]["firmware_version"] = "2.0.0"
    rows[2]["label_code"] = "ZZZZZZ"
    rows[3]["csr"] = device_csr(serial_of(3))
    rows.append(camera_row(4, csr=premade_csrs[4]))

    with pytest.raises(ImportRejected) as caught:
        await registry.import_file(write_jsonl(tmp_path / "second.jsonl", rows))

    assert [(p.row, p.field) for p in caught.value.problems] == [
        (2, "firmware_version"),
        (3, "label_code"),
        (4, "csr"),
    ]
    assert "never overwritten" in caught.value.problems[0].message
    assert await _snapshot(services) == before


async def test_row_without_a_csr_needs_simulated_manufacturing(
    registry: DeviceRegistry, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "factory.jsonl", [camera_row(0)])
    with pytest.raises(ImportRejected) as caught:
        await registry.import_file(path)
    assert [(p.row, p.field) for p in caught.value.problems] == [(1, "csr")]
    assert "--generate-into" in caught.value.problems[0].message


async def test_import_without_a_usable_ca_fails_clearly_and_stores_nothing(
    registry: DeviceRegistry, services: Services, premade_csrs: list[str], tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "factory.jsonl", csr_rows(2, premade_csrs))
    wrong = DeviceRegistry(
        db=services.db,
        clock=services.clock,
        pepper=services.secrets.pepper.get_secret_value(),
        paths=registry.paths,
        ca_passphrase=b"not the passphrase",
    )
    with pytest.raises(CaUnreadable, match="wrong passphrase"):
        await wrong.import_file(path)
    missing = DeviceRegistry(
        db=services.db,
        clock=services.clock,
        pepper=services.secrets.pepper.get_secret_value(),
        paths=CaPaths.in_data_dir(tmp_path / "elsewhere"),
        ca_passphrase=services.secrets.ca_passphrase.get_secret_value(),
    )
    with pytest.raises(CaNotInitialized):
        await missing.import_file(path)
    assert await _count(services) == 0


async def test_report_is_written_even_when_every_row_is_valid(
    registry: DeviceRegistry, premade_csrs: list[str], tmp_path: Path
) -> None:
    report = tmp_path / "report.jsonl"
    path = write_jsonl(tmp_path / "factory.jsonl", csr_rows(2, premade_csrs))
    summary = await registry.import_file(path, skip_invalid=True, report=report)
    assert (summary.imported, summary.invalid, report.read_text()) == (2, 0, "")
