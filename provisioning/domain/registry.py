"""The device registry: factory import, revocation and the CRL, inspection.

Every device the cloud will ever bind arrives through :meth:`DeviceRegistry.import_file`
(``zanuo devices import``). The file format is described in
``docs/DEVICE_IDENTITY.md`` ("Import file format"); in short, one device per
JSON Lines object or CSV row with ``serial``, ``model``, ``type``,
``capabilities``, ``label_code``, ``ble_mac``, ``firmware_version`` and ``csr``.

An import runs in four steps, and nothing is written before the third ends:

1. **read** every row and validate every field (row number + field name in
   each problem; a serial or BLE MAC that appears twice makes every row that
   carries it invalid);
2. **compare** with the registry: a row whose ``import_digest`` equals the
   stored one is *unchanged* and skipped (no CSR check, no signing, no new
   key), a row for a stored serial with another digest is a *conflict* (an
   invalid row; the registry is never overwritten);
3. **check** the CSRs of new rows (signature, P-256, CN = serial) off the event
   loop; any problem so far rejects the whole file unless ``skip_invalid``;
4. **sign** (CSR rows) or **manufacture** (``generate_into`` rows: key pair,
   certificate and label code written to the device's flash folder) in worker
   processes, and insert the results in batches, one transaction per batch.
   A crash in this step leaves whole batches committed; re-running the same
   file completes the import.

``import_digest`` is the SHA-256 of the canonical row. The label code enters
it only as its peppered HMAC, so the digest never lets anyone search the
308 million possible codes offline.

Label codes for simulated manufacturing (a row without a CSR, imported with
``generate_into``): a row that gives a code keeps it; a row that says
``"label_code": null`` (CSV: ``-``) gets none; a row without the field gets a
fresh random code when it is a camera or a hub, and none when it is a lock
(locks bind with a pairing token through a hub). The plaintext code is written
only to the device's flash folder (``device.json``) and returned in the
summary's label payloads; the registry keeps the HMAC.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import re
import signal
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from provisioning.clock import Clock, FrozenClock
from provisioning.errors import DeviceNotFound, ZanuoError
from provisioning.security import ca as device_ca
from provisioning.security import codes
from provisioning.security.crl import (
    REASONS,
    CrlInfo,
    Revocation,
    parse_reason,
    validate_crl_file,
    write_crl,
)
from provisioning.security.errors import CertificateInvalid, CsrInvalid, SecurityError
from provisioning.security.keys import derive_subkey
from provisioning.storage.base import Base
from provisioning.storage.devices import Device
from provisioning.storage.engine import Database

_LOGGER = logging.getLogger(__name__)

T = TypeVar("T")

DEVICE_TYPES: Final = ("camera", "lock", "hub")
CAPABILITIES: Final = ("wifi", "ble", "ble_hub")
FIELDS: Final = (
    "serial",
    "model",
    "type",
    "capabilities",
    "label_code",
    "ble_mac",
    "firmware_version",
    "csr",
)
REQUIRED_FIELDS: Final = ("serial", "model", "type", "firmware_version")
CSV_CAPABILITY_SEPARATOR: Final = "|"
CSV_NO_CODE: Final = "-"
LABEL_CODE_KEY_LABEL: Final = "label-codes"
DEVICE_INFO_FILE: Final = "device.json"
DEFAULT_BATCH_SIZE: Final = 1000
# Below this many certificates to make, starting worker processes costs more
# than it saves (measured: ~2,000 CSR signatures/s on one core).
PROCESS_POOL_THRESHOLD: Final = 2000
MAX_CSR_CHARS: Final = 8192
MAX_PAGE: Final = 500
_LOOKUP_CHUNK: Final = 500
_DIGEST_VERSION: Final = 1
_MAC_PATTERN: Final = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}")
_FIRMWARE_PATTERN: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}")

CA_DIR_NAME: Final = "ca"
BROKER_DIR_NAME: Final = "broker"
CRL_FILE_NAME: Final = "crl.pem"
SERVER_CERT_FILE: Final = "server.crt.pem"
SERVER_KEY_FILE: Final = "server.key.pem"
BRIDGE_CERT_FILE: Final = "bridge.crt.pem"
BRIDGE_KEY_FILE: Final = "bridge.key.pem"
BROKER_PID_FILE: Final = Path("mosquitto") / "mosquitto.pid"


# --------------------------------------------------------------------------- paths


@dataclasses.dataclass(frozen=True, slots=True)
class CaPaths:
    """Where the device CA, the CRL and the broker/bridge credentials live.

    :meth:`in_data_dir` is the layout every command uses: the CA in ``ca/``
    and the broker's files in ``broker/``, the directory
    ``gateway.mqtt.broker.prepare_broker_credentials`` fills (``crl.pem``,
    ``server.*.pem``, ``bridge.*.pem``), so the CRL the registry writes is the
    one the managed broker loads.
    """

    ca_dir: Path
    crl_file: Path
    server_cert_file: Path
    server_key_file: Path
    bridge_cert_file: Path
    bridge_key_file: Path
    broker_pid_file: Path

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> CaPaths:
        """Return the layout under a data dir: ``ca/`` and ``broker/``."""
        data_dir = Path(data_dir)
        broker = data_dir / BROKER_DIR_NAME
        return cls(
            ca_dir=data_dir / CA_DIR_NAME,
            crl_file=broker / CRL_FILE_NAME,
            server_cert_file=broker / SERVER_CERT_FILE,
            server_key_file=broker / SERVER_KEY_FILE,
            bridge_cert_file=broker / BRIDGE_CERT_FILE,
            bridge_key_file=broker / BRIDGE_KEY_FILE,
            broker_pid_file=data_dir / BROKER_PID_FILE,
        )

    @property
    def ca_cert_file(self) -> Path:
        """Return the CA certificate (the broker's ``cafile``)."""
        return device_ca.ca_certificate_path(self.ca_dir)


# --------------------------------------------------------------------------- errors


class RegistryError(ZanuoError):
    """Root of the registry's own errors."""

    status = 422
    code = "registry_error"
    default_message = "the device registry refused the operation"


class FactoryFileInvalid(RegistryError):
    """The factory file as a whole cannot be read (format, header, encoding)."""

    code = "factory_file_invalid"
    default_message = "the factory file cannot be read"


class ImportRejected(RegistryError):
    """At least one row is invalid and ``skip_invalid`` was not given: nothing was imported."""

    code = "import_rejected"
    default_message = "the factory file has invalid rows; nothing was imported"
    shown: ClassVar[int] = 10

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        lines = [str(problem) for problem in problems[: self.shown]]
        more = len(problems) - len(lines)
        if more > 0:
            lines.append(f"... and {more} more (write them all with --report)")
        super().__init__(
            f"{len(problems)} invalid row problem(s); nothing was imported:\n" + "\n".join(lines),
            problems=[problem.to_dict() for problem in problems],
        )
        self.problems = tuple(problems)


class ImportRaced(RegistryError):
    """Another import stored one of the serials at the same time."""

    status = 409
    code = "import_raced"
    default_message = (
        "another import registered some of these devices at the same time; run the import again"
    )


# --------------------------------------------------------------------------- rows


class CodeSource(enum.StrEnum):
    """Where a row's label code comes from."""

    GIVEN = "given"  # the row carries the code printed on the label
    NONE = "none"  # the row says the device has no code
    DEFAULT = "default"  # the row is silent: the type decides (see the module doc)


@dataclasses.dataclass(frozen=True, slots=True)
class RowProblem:
    """Why one row is invalid; never carries a label code."""

    row: int
    field: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """Return the report-file shape ``{row, field, message}``."""
        return {"row": self.row, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        return f"row {self.row}, field {self.field}: {self.message}"


class _RowInvalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True, slots=True)
class FactoryRow:
    """One validated device row of a factory file."""

    row: int
    serial: str
    model: str
    device_type: str
    capabilities: tuple[str, ...]
    code_source: CodeSource
    label_code: str | None = dataclasses.field(repr=False)
    ble_mac: str | None
    firmware_version: str
    csr_pem: str | None = dataclasses.field(repr=False)

    @property
    def gets_generated_code(self) -> bool:
        """Tell whether simulated manufacturing makes a label code for this row."""
        return self.code_source is CodeSource.DEFAULT and self.device_type != "lock"

    @property
    def has_code(self) -> bool:
        """Tell whether the device ends up with a label code."""
        return self.code_source is CodeSource.GIVEN or (
            self.csr_pem is None and self.gets_generated_code
        )


def _text(record: Mapping[str, object], name: str, *, required: bool) -> str | None:
    value = record.get(name)
    if value is None:
        if required:
            raise _RowInvalid(name, "is required")
        return None
    if not isinstance(value, str):
        raise _RowInvalid(name, "must be text")
    return value


def _capabilities(value: object) -> tuple[str, ...]:
    if value is None:
        raise _RowInvalid("capabilities", "is required (a list of wifi, ble, ble_hub)")
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _RowInvalid("capabilities", "must be a list of names")
    unknown = sorted(set(value) - set(CAPABILITIES))
    if unknown:
        raise _RowInvalid(
            "capabilities", f"unknown capability {unknown[0]!r}; use {', '.join(CAPABILITIES)}"
        )
    if len(set(value)) != len(value):
        raise _RowInvalid("capabilities", "names a capability twice")
    if not value:
        raise _RowInvalid("capabilities", "must name at least one of wifi, ble, ble_hub")
    return tuple(sorted(value, key=CAPABILITIES.index))


def parse_row(row: int, record: Mapping[str, object]) -> FactoryRow:
    """Validate one decoded record (JSON object shape); raise on the first bad field."""
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise _RowInvalid(unknown[0], f"unknown field; the fields are {', '.join(FIELDS)}")
    serial = _text(record, "serial", required=True)
    assert serial is not None
    if not codes.SERIAL_PATTERN.fullmatch(serial):
        raise _RowInvalid(
            "serial", "a serial is 4-32 characters A-Z, 0-9 and '-', starting with A-Z or 0-9"
        )
    model = _text(record, "model", required=True)
    assert model is not None
    if not codes.MODEL_PATTERN.fullmatch(model):
        raise _RowInvalid("model", "a model is 1-32 characters A-Z, a-z, 0-9, '.', '_' and '-'")
    device_type = _text(record, "type", required=True)
    if device_type not in DEVICE_TYPES:
        raise _RowInvalid("type", f"must be one of {', '.join(DEVICE_TYPES)}")
    capabilities = _capabilities(record.get("capabilities"))
    if "ble_hub" in capabilities and device_type != "hub":
        raise _RowInvalid("capabilities", "only a hub has ble_hub")
    if device_type == "hub" and not {"wifi", "ble_hub"} <= set(capabilities):
        raise _RowInvalid("capabilities", "a hub has wifi and ble_hub")
    if not {"wifi", "ble"} & set(capabilities):
        raise _RowInvalid("capabilities", "a device needs wifi or ble to be provisioned")
    if "label_code" not in record:
        code_source, label_code = CodeSource.DEFAULT, None
    elif record["label_code"] is None:
        code_source, label_code = CodeSource.NONE, None
    else:
        label_code = _text(record, "label_code", required=True)
        if label_code is None or not re.fullmatch(r"[A-Z]{6}", label_code):
            # Never echo the value: even a malformed code is a label secret.
            raise _RowInvalid("label_code", "a label code is exactly six letters A-Z")
        code_source = CodeSource.GIVEN
    ble_mac = _text(record, "ble_mac", required=False)
    if ble_mac is not None:
        ble_mac = ble_mac.upper()
        if not _MAC_PATTERN.fullmatch(ble_mac):
            raise _RowInvalid("ble_mac", "a BLE MAC is six hex pairs separated by ':'")
        if not {"ble", "ble_hub"} & set(capabilities):
            raise _RowInvalid("ble_mac", "only a device with ble or ble_hub has a BLE MAC")
    firmware = _text(record, "firmware_version", required=True)
    assert firmware is not None
    if not _FIRMWARE_PATTERN.fullmatch(firmware):
        raise _RowInvalid(
            "firmware_version", "a firmware version is 1-32 characters A-Z, a-z, 0-9, '.+_-'"
        )
    csr_pem = _text(record, "csr", required=False)
    if csr_pem is not None:
        csr_pem = csr_pem.replace("\r\n", "\n").strip()
        if len(csr_pem) > MAX_CSR_CHARS or "-----BEGIN CERTIFICATE REQUEST-----" not in csr_pem:
            raise _RowInvalid("csr", "the CSR is not a PEM certificate request")
    return FactoryRow(
        row=row,
        serial=serial,
        model=model,
        device_type=device_type,
        capabilities=capabilities,
        code_source=code_source,
        label_code=label_code,
        ble_mac=ble_mac,
        firmware_version=firmware,
        csr_pem=csr_pem,
    )


class ImportFormat(enum.StrEnum):
    """The factory file formats."""

    JSONL = "jsonl"
    CSV = "csv"


def detect_format(path: Path) -> ImportFormat:
    """Guess the format from the file name (``.csv``; ``.jsonl``/``.ndjson``/``.json``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return ImportFormat.CSV
    if suffix in (".jsonl", ".ndjson", ".json"):
        return ImportFormat.JSONL
    raise FactoryFileInvalid(
        "cannot tell the format from the file name; pass --format jsonl or csv", path=str(path)
    )


Record = Mapping[str, object] | RowProblem


def _jsonl_records(path: Path) -> Iterator[tuple[int, Record]]:
    with Path(path).open("r", encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                yield number, RowProblem(number, "row", "not a JSON object")
                continue
            if not isinstance(value, dict):
                yield number, RowProblem(number, "row", "not a JSON object")
                continue
            yield number, value


def _csv_records(path: Path) -> Iterator[tuple[int, Record]]:
    # Row numbers are what a spreadsheet shows: the header is row 1.
    with Path(path).open("r", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return
        names = [name.strip() for name in header]
        unknown = sorted(set(names) - set(FIELDS))
        missing = sorted(set(REQUIRED_FIELDS) - set(names))
        if unknown or missing or len(set(names)) != len(names):
            raise FactoryFileInvalid(
                "the CSV header must name each column once, from: " + ", ".join(FIELDS),
                unknown=unknown,
                missing=missing,
            )
        for number, cells in enumerate(reader, start=2):
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(names):
                yield number, RowProblem(number, "row", f"has {len(cells)} cells, not {len(names)}")
                continue
            record: dict[str, object] = {}
            for name, cell in zip(names, cells, strict=True):
                value = cell if name == "csr" else cell.strip()
                if not value:
                    continue  # an empty cell is an absent field
                if name == "capabilities":
                    record[name] = [part.strip() for part in value.split(CSV_CAPABILITY_SEPARATOR)]
                elif name == "label_code" and value == CSV_NO_CODE:
                    record[name] = None
                else:
                    record[name] = value
            yield number, record


def read_factory_file(
    path: Path, fmt: ImportFormat | None = None
) -> tuple[list[FactoryRow], list[RowProblem]]:
    """Read and validate a whole factory file: valid rows and every row problem."""
    fmt = fmt or detect_format(path)
    records = _csv_records(path) if fmt is ImportFormat.CSV else _jsonl_records(path)
    rows: list[FactoryRow] = []
    problems: list[RowProblem] = []
    try:
        for number, record in records:
            if isinstance(record, RowProblem):
                problems.append(record)
                continue
            try:
                rows.append(parse_row(number, record))
            except _RowInvalid as err:
                problems.append(RowProblem(number, err.field, err.message))
    except UnicodeDecodeError as err:
        raise FactoryFileInvalid("the factory file is not UTF-8 text", path=str(path)) from err
    except OSError as err:
        raise FactoryFileInvalid("the factory file cannot be read", path=str(path)) from err
    except csv.Error as err:
        raise FactoryFileInvalid(f"the CSV file is malformed: {err}", path=str(path)) from err
    problems.extend(_duplicates(rows, "serial", lambda r: r.serial))
    problems.extend(_duplicates(rows, "ble_mac", lambda r: r.ble_mac))
    return rows, problems


def _duplicates(
    rows: Iterable[FactoryRow], field: str, key: Callable[[FactoryRow], str | None]
) -> list[RowProblem]:
    seen: dict[str, list[int]] = {}
    for row in rows:
        value = key(row)
        if value is not None:
            seen.setdefault(value, []).append(row.row)
    problems: list[RowProblem] = []
    for numbers in seen.values():
        if len(numbers) > 1:
            # Every copy is invalid: nothing tells which one is the real device.
            listed = ", ".join(str(n) for n in numbers)
            problems.extend(
                RowProblem(n, field, f"the same {field} is on rows {listed}") for n in numbers
            )
    return problems


# --------------------------------------------------------------------------- digests


def label_code_key(pepper: bytes) -> bytes:
    """Return the HMAC key for label codes, derived from the pepper (never the pepper itself)."""
    return derive_subkey(pepper, LABEL_CODE_KEY_LABEL)


def import_digest(row: FactoryRow, code_key: bytes) -> str:
    """Return the SHA-256 (hex) of the canonical row: equal rows, equal digests."""
    if row.code_source is CodeSource.GIVEN:
        assert row.label_code is not None
        code = codes.label_code_digest(code_key, row.serial, row.label_code).hex()
    elif row.csr_pem is None and row.gets_generated_code:
        code = "generated"
    else:
        code = "none"  # with a CSR an absent code and an explicit null say the same
    canonical = {
        "v": _DIGEST_VERSION,
        "serial": row.serial,
        "model": row.model,
        "type": row.device_type,
        "capabilities": list(row.capabilities),
        "label_code": code,
        "ble_mac": row.ble_mac,
        "firmware_version": row.firmware_version,
        "csr": row.csr_pem,
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


# --------------------------------------------------------------------------- progress


@dataclasses.dataclass(frozen=True, slots=True)
class ImportProgress:
    """Where a running import is: the step and how far into it."""

    step: str
    done: int
    total: int


ProgressCallback = Callable[[ImportProgress], None]


@dataclasses.dataclass(frozen=True, slots=True)
class ImportSummary:
    """The outcome of one import."""

    rows: int
    imported: int
    unchanged: int
    invalid: int
    elapsed: float
    problems: tuple[RowProblem, ...] = ()
    # QR texts of devices made by simulated manufacturing; they hold label codes.
    label_payloads: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    @property
    def rows_per_second(self) -> float:
        """Return the rows of the file handled per second of wall time."""
        return self.rows / self.elapsed if self.elapsed > 0 else float(self.rows)


# --------------------------------------------------------------------------- workers

# Certificates are made in worker processes (CPU-bound, and the GIL keeps
# threads from helping: measured 2,430 signatures/s on one thread, 2,610 on
# two). Each worker loads the CA once; the passphrase travels over the pool's
# pipe, never through a file or the environment.
_WORKER_CA: device_ca.CertificateAuthority | None = None


def _init_worker(ca_dir: str, passphrase: bytes) -> None:
    global _WORKER_CA  # one CA per worker process, loaded once
    _WORKER_CA = device_ca.load_ca(Path(ca_dir), passphrase)


def _worker_ca() -> device_ca.CertificateAuthority:
    if _WORKER_CA is None:
        raise RuntimeError("the worker was started without the CA")
    return _WORKER_CA


def check_csrs(items: Sequence[tuple[str, str]]) -> list[bytes | str]:
    """Check CSRs (serial, PEM); return each public key (DER) or the reason it is refused."""
    results: list[bytes | str] = []
    for serial, pem in items:
        try:
            key = device_ca.load_device_csr(pem.encode(), serial)
        except SecurityError as err:
            results.append(err.message)
            continue
        results.append(
            key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return results


@dataclasses.dataclass(frozen=True, slots=True)
class _Issued:
    certificate_pem: str
    fingerprint: str
    serial_hex: str
    label_code: str | None = dataclasses.field(repr=False, default=None)


def _issued(certificate: x509.Certificate, label_code: str | None = None) -> _Issued:
    return _Issued(
        certificate_pem=device_ca.certificate_pem(certificate).decode("ascii"),
        fingerprint=device_ca.certificate_fingerprint(certificate),
        serial_hex=certificate_serial_hex(certificate),
        label_code=label_code,
    )


def sign_public_keys(
    ca: device_ca.CertificateAuthority, now: dt.datetime, items: Sequence[tuple[str, bytes]]
) -> list[_Issued]:
    """Issue device certificates for checked public keys (serial, DER)."""
    clock = FrozenClock(now)
    issued = []
    for serial, der in items:
        key = serialization.load_der_public_key(der)
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise CsrInvalid("device keys must be ECDSA P-256", serial=serial)
        issued.append(_issued(device_ca.issue_device_certificate(ca, serial, key, clock)))
    return issued


@dataclasses.dataclass(frozen=True, slots=True)
class FlashSpec:
    """What simulated manufacturing writes for one device."""

    serial: str
    model: str
    device_type: str
    capabilities: tuple[str, ...]
    label_code: str | None = dataclasses.field(repr=False)
    generate_code: bool
    ble_mac: str | None
    firmware_version: str


def manufacture_devices(
    ca: device_ca.CertificateAuthority,
    now: dt.datetime,
    directory: Path,
    items: Sequence[FlashSpec],
) -> list[_Issued]:
    """Make each device's key, certificate and label code in ``directory/<serial>/``."""
    clock = FrozenClock(now)
    issued = []
    for spec in items:
        folder = Path(directory) / spec.serial
        certificate = device_ca.manufacture_device(ca, spec.serial, folder, clock)
        code = codes.generate_label_code() if spec.generate_code else spec.label_code
        info = {
            "serial": spec.serial,
            "model": spec.model,
            "type": spec.device_type,
            "capabilities": list(spec.capabilities),
            "label_code": code,
            "ble_mac": spec.ble_mac,
            "firmware_version": spec.firmware_version,
            "label_payload": codes.format_label_payload(spec.serial, code, spec.model),
        }
        # The device's own flash: the one place the plaintext code may live.
        device_ca.write_file_atomically(
            folder / DEVICE_INFO_FILE,
            (json.dumps(info, indent=2) + "\n").encode(),
            durable=False,  # like the key and certificate: simulated flash, not disk-bound
        )
        issued.append(_issued(certificate, code))
    return issued


def _sign_in_worker(now: dt.datetime, items: Sequence[tuple[str, bytes]]) -> list[_Issued]:
    return sign_public_keys(_worker_ca(), now, items)


def _manufacture_in_worker(
    now: dt.datetime, directory: Path, items: Sequence[FlashSpec]
) -> list[_Issued]:
    return manufacture_devices(_worker_ca(), now, directory, items)


@dataclasses.dataclass(frozen=True, slots=True)
class _Crypto:
    """Where certificate work runs: worker processes, or one thread with the CA at hand."""

    executor: Executor
    ca: device_ca.CertificateAuthority | None

    def check(self, items: Sequence[tuple[str, str]]) -> Callable[[], list[bytes | str]]:
        return functools.partial(check_csrs, items)

    def sign(self, now: dt.datetime, items: Sequence[tuple[str, bytes]]) -> Callable[[], Any]:
        if self.ca is None:
            return functools.partial(_sign_in_worker, now, items)
        return functools.partial(sign_public_keys, self.ca, now, items)

    def manufacture(
        self, now: dt.datetime, directory: Path, items: Sequence[FlashSpec]
    ) -> Callable[[], Any]:
        if self.ca is None:
            return functools.partial(_manufacture_in_worker, now, directory, items)
        return functools.partial(manufacture_devices, self.ca, now, directory, items)


def _device_table() -> Table:
    return Base.metadata.tables[Device.__tablename__]


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --------------------------------------------------------------------------- broker


class BrokerReloader(Protocol):
    """Anything that makes a broker reload its CRL (``ManagedMosquitto`` fits)."""

    async def reload(self) -> None:
        """Make the broker load the CRL file again."""
        ...


class PidFileBroker:
    """A Mosquitto found through its pid file: validate the CRL, then ``SIGHUP`` it."""

    def __init__(self, pid: int, crl_file: Path, ca_cert_file: Path, clock: Clock) -> None:
        self.pid = pid
        self._crl_file = crl_file
        self._ca_cert_file = ca_cert_file
        self._clock = clock

    async def reload(self) -> None:
        """Validate the CRL file and signal the broker to reload it."""
        # A broken CRL at SIGHUP makes Mosquitto fail open: check it first.
        validate_crl_file(
            self._crl_file, device_ca.read_certificate(self._ca_cert_file), self._clock
        )
        os.kill(self.pid, signal.SIGHUP)
        _LOGGER.info("Sent SIGHUP to the broker (pid %s) to reload the CRL", self.pid)


def find_managed_broker(paths: CaPaths, clock: Clock) -> PidFileBroker | None:
    """Return the running Mosquitto named by the data dir's pid file, or None."""
    try:
        pid = int(paths.broker_pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    # A stale pid file may name a process that has nothing to do with us.
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    if name != "mosquitto":
        return None
    return PidFileBroker(pid, paths.crl_file, paths.ca_cert_file, clock)


@dataclasses.dataclass(frozen=True, slots=True)
class CrlOutcome:
    """A CRL written and what happened to the broker."""

    crl: CrlInfo
    broker_reloaded: bool
    broker_error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationOutcome:
    """The result of revoking one device."""

    serial: str
    revoked_at: dt.datetime
    reason: str
    already_revoked: bool
    crl: CrlOutcome


# --------------------------------------------------------------------------- lookups


def certificate_serial_hex(certificate: x509.Certificate) -> str:
    """Return the X.509 serial number as lower-case hex (``Device.certificate_serial``)."""
    return format(certificate.serial_number, "x")


def is_bindable(device: Device) -> bool:
    """Tell whether a registered device may be bound (its certificate is not revoked)."""
    return device.revoked_at is None


def device_certificate(device: Device) -> x509.Certificate:
    """Return the device's registered certificate."""
    return device_ca.load_certificate(device.certificate_pem.encode("ascii"))


def device_public_key(device: Device) -> ec.EllipticCurvePublicKey:
    """Return the device's public key from its registered certificate (P-256)."""
    key = device_certificate(device).public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateInvalid("the device certificate holds no EC key")
    return key


def verify_device_code(code_key: bytes, device: Device, entered: str) -> bool:
    """Check a label code against the device's HMAC in constant time; False when it has none."""
    stored = device.label_code_digest
    if stored is None:
        # Spend the same HMAC so "no code" is not measurably faster than "wrong code".
        codes.verify_label_code(code_key, device.serial, entered, bytes(32))
        return False
    return codes.verify_label_code(code_key, device.serial, entered, stored)


async def find_device(db: Database, serial: str) -> Device | None:
    """Return the registered device with this serial, or None."""
    async with db.session() as session:
        return await session.get(Device, serial)


async def get_device(db: Database, serial: str) -> Device:
    """Return the registered device with this serial or raise :class:`DeviceNotFound`."""
    device = await find_device(db, serial)
    if device is None:
        raise DeviceNotFound(serial=serial)
    return device


async def list_devices(db: Database, *, limit: int = 100, after: str | None = None) -> list[Device]:
    """Return up to ``limit`` devices ordered by serial, starting after ``after``."""
    limit = max(1, min(limit, MAX_PAGE))
    statement = select(Device).order_by(Device.serial).limit(limit)
    if after is not None:
        statement = statement.where(Device.serial > after)
    async with db.session() as session:
        return list((await session.scalars(statement)).all())


def write_report(path: Path, problems: Iterable[RowProblem]) -> None:
    """Write row problems as JSON lines ``{row, field, message}`` (no row values, no codes)."""
    lines = "".join(
        json.dumps(problem.to_dict(), sort_keys=True) + "\n"
        for problem in sorted(problems, key=lambda p: (p.row, p.field))
    )
    device_ca.write_file_atomically(Path(path), lines.encode(), mode=0o644)


# --------------------------------------------------------------------------- the registry


class DeviceRegistry:
    """The factory registry: import, revocation + CRL, lookups."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        pepper: bytes,
        paths: CaPaths,
        ca_passphrase: bytes,
        broker: BrokerReloader | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.paths = paths
        self.broker = broker
        self._code_key = label_code_key(pepper)
        self._ca_passphrase = ca_passphrase

    # ------------------------------------------------------------------ reads

    async def get(self, serial: str) -> Device:
        """Return a registered device or raise :class:`DeviceNotFound`."""
        return await get_device(self.db, serial)

    async def page(self, *, limit: int = 100, after: str | None = None) -> list[Device]:
        """Return one page of devices ordered by serial."""
        return await list_devices(self.db, limit=limit, after=after)

    def verify_code(self, device: Device, entered: str) -> bool:
        """Check a label code entered for ``device``."""
        return verify_device_code(self._code_key, device, entered)

    def load_ca(self) -> device_ca.CertificateAuthority:
        """Load the device CA (blocking: decrypts the key)."""
        return device_ca.load_ca(self.paths.ca_dir, self._ca_passphrase)

    # ------------------------------------------------------------------ import

    async def import_file(
        self,
        path: Path,
        *,
        fmt: ImportFormat | None = None,
        skip_invalid: bool = False,
        report: Path | None = None,
        generate_into: Path | None = None,
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> ImportSummary:
        """Import a factory file (see the module doc); raise :class:`ImportRejected` on bad rows."""
        started = time.perf_counter()
        notify = progress or (lambda _: None)
        rows, problems = await asyncio.to_thread(read_factory_file, path, fmt)
        problem_rows = {p.row for p in problems}
        total = len({row.row for row in rows} | problem_rows)
        candidates = [row for row in rows if row.row not in problem_rows]

        digests = await asyncio.to_thread(self._digests, candidates)
        new_rows, unchanged, conflicts = await self._compare(candidates, digests, generate_into)
        problems.extend(conflicts)
        problem_rows |= {p.row for p in conflicts}
        new_rows = [row for row in new_rows if row.row not in problem_rows]
        notify(ImportProgress("read", total, total))  # read, validated, compared

        signing = [row for row in new_rows if row.csr_pem is not None]
        making = [row for row in new_rows if row.csr_pem is None]
        async with self._crypto(workers, len(new_rows)) as crypto:
            keys, csr_problems = await self._check_csrs(crypto, signing, notify)
            problems.extend(csr_problems)
            if report is not None:
                # Always written when asked for: an empty report says "no invalid row".
                await asyncio.to_thread(write_report, report, problems)
            if problems:
                if not skip_invalid:
                    raise ImportRejected(sorted(problems, key=lambda p: (p.row, p.field)))
                for problem in sorted(problems, key=lambda p: (p.row, p.field)):
                    _LOGGER.warning("Skipped %s", problem)
            signing = [row for row in signing if row.serial in keys]
            labels = await self._produce(
                crypto, signing, keys, making, generate_into, digests, batch_size, notify
            )
        summary = ImportSummary(
            rows=total,
            imported=len(signing) + len(making),
            unchanged=unchanged,
            invalid=len({p.row for p in problems}),
            elapsed=time.perf_counter() - started,
            problems=tuple(sorted(problems, key=lambda p: (p.row, p.field))),
            label_payloads=tuple(labels),
        )
        _LOGGER.info(
            "Imported %s device(s) from %s: %s unchanged, %s invalid, %.0f rows/s",
            summary.imported,
            path,
            summary.unchanged,
            summary.invalid,
            summary.rows_per_second,
        )
        return summary

    def _digests(self, rows: Sequence[FactoryRow]) -> dict[str, str]:
        return {row.serial: import_digest(row, self._code_key) for row in rows}

    async def _compare(
        self, rows: Sequence[FactoryRow], digests: Mapping[str, str], generate_into: Path | None
    ) -> tuple[list[FactoryRow], int, list[RowProblem]]:
        stored: dict[str, str] = {}
        async with self.db.session() as session:
            for chunk in _batches([row.serial for row in rows], _LOOKUP_CHUNK):
                result = await session.execute(
                    select(Device.serial, Device.import_digest).where(Device.serial.in_(chunk))
                )
                stored.update({serial: digest for serial, digest in result.all()})
            conflicting = [
                r for r in rows if r.serial in stored and stored[r.serial] != digests[r.serial]
            ]
            problems = [
                RowProblem(row.row, await self._conflict_field(session, row), _CONFLICT)
                for row in conflicting
            ]
        new_rows, unchanged = [], 0
        for row in rows:
            if row.serial in stored:
                unchanged += stored[row.serial] == digests[row.serial]
                continue
            if row.csr_pem is None and generate_into is None:
                problems.append(
                    RowProblem(
                        row.row,
                        "csr",
                        "a CSR is required (or import with --generate-into DIR to simulate "
                        "manufacturing)",
                    )
                )
                continue
            new_rows.append(row)
        return new_rows, unchanged, problems

    async def _conflict_field(self, session: AsyncSession, row: FactoryRow) -> str:
        """Name the first field where a row differs from the stored device."""
        device = await session.get(Device, row.serial)
        if device is None:  # pragma: no cover - deleted between the two reads
            return "serial"
        if device.model != row.model:
            return "model"
        if device.device_type != row.device_type:
            return "type"
        if list(device.capabilities) != list(row.capabilities):
            return "capabilities"
        if device.ble_mac != row.ble_mac:
            return "ble_mac"
        if device.firmware_version != row.firmware_version:
            return "firmware_version"
        if row.code_source is CodeSource.GIVEN:
            assert row.label_code is not None
            if device.label_code_digest is None or not codes.verify_label_code(
                self._code_key, row.serial, row.label_code, device.label_code_digest
            ):
                return "label_code"
        elif (device.label_code_digest is not None) != row.has_code:
            return "label_code"
        return "csr"

    @contextlib.asynccontextmanager
    async def _crypto(self, workers: int | None, pending: int) -> AsyncIterator[_Crypto]:
        count = workers if workers is not None else (os.cpu_count() or 1)
        use_pool = count > 1 and (workers is not None or pending >= PROCESS_POOL_THRESHOLD)
        if pending == 0:
            use_pool = False
        executor: Executor
        ca: device_ca.CertificateAuthority | None = None
        if use_pool:
            # spawn, not fork: this process runs threads (aiosqlite, executors).
            executor = ProcessPoolExecutor(
                max_workers=count,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(self.paths.ca_dir), self._ca_passphrase),
            )
        else:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-crypto")
        try:
            if pending:
                # Load here even for the pool: a missing CA or a wrong passphrase
                # fails clearly now instead of as a broken worker later.
                loaded = await asyncio.to_thread(self.load_ca)
                ca = None if use_pool else loaded
            yield _Crypto(executor=executor, ca=ca)
        finally:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def _check_csrs(
        self, crypto: _Crypto, rows: Sequence[FactoryRow], notify: ProgressCallback
    ) -> tuple[dict[str, bytes], list[RowProblem]]:
        keys: dict[str, bytes] = {}
        problems: list[RowProblem] = []
        batches = [
            [(row.serial, row.csr_pem or "") for row in batch]
            for batch in _batches(rows, DEFAULT_BATCH_SIZE)
        ]
        by_serial = {row.serial: row for row in rows}
        done = 0
        async with contextlib.aclosing(
            _pipelined(crypto.executor, batches, crypto.check)
        ) as results_in_order:
            async for batch, results in results_in_order:
                for (serial, _), result in zip(batch, results, strict=True):
                    if isinstance(result, bytes):
                        keys[serial] = result
                    else:
                        problems.append(RowProblem(by_serial[serial].row, "csr", result))
                done += len(batch)
                notify(ImportProgress("check", done, len(rows)))
        return keys, problems

    async def _produce(
        self,
        crypto: _Crypto,
        signing: Sequence[FactoryRow],
        keys: Mapping[str, bytes],
        making: Sequence[FactoryRow],
        generate_into: Path | None,
        digests: Mapping[str, str],
        batch_size: int,
        notify: ProgressCallback,
    ) -> list[str]:
        now = self.clock.now()
        total = len(signing) + len(making)
        jobs: list[tuple[Sequence[FactoryRow], Callable[[], list[_Issued]]]] = []
        for batch in _batches(signing, batch_size):
            jobs.append(
                (batch, crypto.sign(now, [(row.serial, keys[row.serial]) for row in batch]))
            )
        if making:
            assert generate_into is not None
            directory = await asyncio.to_thread(Path(generate_into).resolve)
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
            for batch in _batches(making, batch_size):
                specs = [
                    FlashSpec(
                        serial=row.serial,
                        model=row.model,
                        device_type=row.device_type,
                        capabilities=row.capabilities,
                        label_code=row.label_code,
                        generate_code=row.gets_generated_code,
                        ble_mac=row.ble_mac,
                        firmware_version=row.firmware_version,
                    )
                    for row in batch
                ]
                jobs.append((batch, crypto.manufacture(now, directory, specs)))
        labels: list[str] = []
        done = 0
        if total:
            notify(ImportProgress("import", 0, total))
        async with contextlib.aclosing(
            _pipelined(crypto.executor, jobs, lambda job: job[1])
        ) as results_in_order:
            async for (batch, _), issued in results_in_order:
                await self._insert(batch, issued, digests, now)
                labels.extend(
                    codes.format_label_payload(row.serial, item.label_code, row.model)
                    for row, item in zip(batch, issued, strict=True)
                    if row.csr_pem is None
                )
                done += len(batch)
                notify(ImportProgress("import", done, total))
        return labels

    async def _insert(
        self,
        batch: Sequence[FactoryRow],
        issued: Sequence[_Issued],
        digests: Mapping[str, str],
        now: dt.datetime,
    ) -> None:
        values = []
        for row, item in zip(batch, issued, strict=True):
            # A CSR row has the code it gives (or none); a manufactured one what was made.
            code = row.label_code if row.csr_pem is not None else item.label_code
            values.append(
                {
                    "serial": row.serial,
                    "model": row.model,
                    "device_type": row.device_type,
                    "capabilities": list(row.capabilities),
                    "label_code_digest": (
                        None
                        if code is None
                        else codes.label_code_digest(self._code_key, row.serial, code)
                    ),
                    "ble_mac": row.ble_mac,
                    "firmware_version": row.firmware_version,
                    "certificate_pem": item.certificate_pem,
                    "certificate_fingerprint": item.fingerprint,
                    "certificate_serial": item.serial_hex,
                    "import_digest": digests[row.serial],
                    "imported_at": now,
                    "online": False,
                }
            )
        try:
            async with self.db.session() as session, session.begin():
                # Core executemany: the ORM's bulk path costs ~2x per row here.
                await session.execute(insert(_device_table()), values)
        except IntegrityError as err:
            raise ImportRaced() from err

    # ------------------------------------------------------------------ revocation

    async def revoke(self, serial: str, reason: str) -> RevocationOutcome:
        """Mark a device revoked, rewrite the CRL from the registry, then reload the broker."""
        parse_reason(reason)
        reason_name = reason.strip().lower().replace("-", "_")
        now = self.clock.now()
        async with self.db.session() as session, session.begin():
            device = await session.get(Device, serial, with_for_update=True)
            if device is None:
                raise DeviceNotFound(serial=serial)
            already = device.revoked_at is not None
            if not already:
                device.revoked_at = now
                device.revoked_reason = reason_name
            revoked_at, stored_reason = device.revoked_at, device.revoked_reason
        assert revoked_at is not None
        assert stored_reason is not None
        if not already:
            _LOGGER.info("Revoked device %s (%s)", serial, reason_name)
        crl = await self.reissue_crl()
        return RevocationOutcome(
            serial=serial,
            revoked_at=revoked_at,
            reason=stored_reason,
            already_revoked=already,
            crl=crl,
        )

    async def revocations(self) -> dict[int, Revocation]:
        """Return every revoked device certificate (X.509 serial → revocation)."""
        statement = select(
            Device.certificate_serial, Device.revoked_at, Device.revoked_reason
        ).where(Device.revoked_at.is_not(None))
        revoked: dict[int, Revocation] = {}
        async with self.db.session() as session:
            for cert_serial, revoked_at, reason in (await session.execute(statement)).all():
                assert revoked_at is not None
                flag = REASONS.get(reason or "unspecified", x509.ReasonFlags.unspecified)
                revoked[int(cert_serial, 16)] = Revocation(revoked_at=revoked_at, reason=flag)
        return revoked

    async def reissue_crl(self) -> CrlOutcome:
        """Write a fresh, validated CRL from the registry, then tell the broker to reload it."""
        revoked = await self.revocations()

        def build() -> CrlInfo:
            return write_crl(self.load_ca(), revoked, self.paths.crl_file, self.clock)

        info = await asyncio.to_thread(build)
        if self.broker is None:
            return CrlOutcome(crl=info, broker_reloaded=False)
        try:
            await self.broker.reload()
        except (ZanuoError, OSError) as err:
            message = err.message if isinstance(err, ZanuoError) else str(err)
            _LOGGER.warning("The CRL was written but the broker did not reload: %s", message)
            return CrlOutcome(crl=info, broker_reloaded=False, broker_error=message)
        return CrlOutcome(crl=info, broker_reloaded=True)


_CONFLICT: Final = (
    "conflicts with the registered device (same serial, different data); "
    "the registry is never overwritten"
)


async def _pipelined(
    executor: Executor,
    items: Sequence[T],
    to_call: Callable[[T], Callable[[], Any]],
    *,
    depth: int = 4,
) -> AsyncGenerator[tuple[T, Any], None]:
    """Run ``to_call(item)`` in ``executor`` with ``depth`` in flight; yield results in order."""
    loop = asyncio.get_running_loop()
    in_flight: deque[tuple[T, asyncio.Future[Any]]] = deque()
    queue = iter(items)
    try:
        for item in queue:
            in_flight.append((item, loop.run_in_executor(executor, to_call(item))))
            if len(in_flight) >= depth:
                break
        while in_flight:
            item, future = in_flight.popleft()
            result = await future
            nxt = next(queue, None)
            if nxt is not None:
                in_flight.append((nxt, loop.run_in_executor(executor, to_call(nxt))))
            yield item, result
    finally:
        for _, future in in_flight:
            future.cancel()


__all__ = [
    "CAPABILITIES",
    "DEVICE_TYPES",
    "BrokerReloader",
    "CaPaths",
    "CodeSource",
    "CrlOutcome",
    "DeviceRegistry",
    "FactoryFileInvalid",
    "FactoryRow",
    "ImportFormat",
    "ImportProgress",
    "ImportRaced",
    "ImportRejected",
    "ImportSummary",
    "PidFileBroker",
    "RegistryError",
    "RevocationOutcome",
    "RowProblem",
    "certificate_serial_hex",
    "device_certificate",
    "device_public_key",
    "find_device",
    "find_managed_broker",
    "get_device",
    "import_digest",
    "is_bindable",
    "label_code_key",
    "list_devices",
    "parse_row",
    "read_factory_file",
    "verify_device_code",
    "write_report",
]
