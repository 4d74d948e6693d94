"""Factory-file helpers for the registry tests: rows with real per-device CSRs."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning.domain.registry import FIELDS

Row = dict[str, Any]


def device_csr(serial: str, key: ec.EllipticCurvePrivateKey | None = None) -> str:
    """Return a CSR (PEM) for ``serial`` as a device would make it on its own key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode("ascii")


def serial_of(index: int, prefix: str = "ZC1") -> str:
    """Return the test serial number ``index``."""
    return f"{prefix}-{index:07d}"


def camera_row(index: int, *, csr: str | None = None, **fields: Any) -> Row:
    """Return a valid camera row (with a label code) for ``serial_of(index)``."""
    row: Row = {
        "serial": serial_of(index),
        "model": "CAM-100",
        "type": "camera",
        "capabilities": ["wifi", "ble"],
        "label_code": "ABCDEF",
        "ble_mac": f"02:00:00:{index >> 16 & 0xFF:02X}:{index >> 8 & 0xFF:02X}:{index & 0xFF:02X}",
        "firmware_version": "1.4.2",
    }
    if csr is not None:
        row["csr"] = csr
    row.update(fields)
    return row


def csr_rows(count: int, csrs: Sequence[str]) -> list[Row]:
    """Return ``count`` camera rows carrying the pre-made CSRs of ``serial_of(0..)``."""
    return [camera_row(i, csr=csrs[i]) for i in range(count)]


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows as JSON Lines."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows as CSV (capabilities joined with '|', a null code as '-')."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for row in rows:
            cells = []
            for name in FIELDS:
                value = row.get(name, "")
                if name == "capabilities":
                    value = "|".join(value)
                elif name == "label_code" and name in row and value is None:
                    value = "-"
                cells.append("" if value is None else value)
            writer.writerow(cells)
    return path
