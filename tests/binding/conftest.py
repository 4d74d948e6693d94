"""Devices registered the way the factory import stores them, with real certificates."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Awaitable, Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.domain.accounts import Principal
from provisioning.protocomm.bind import DEVICE_NONCE_LEN, sign_bind_proof
from provisioning.security.ca import certificate_fingerprint, certificate_pem
from provisioning.security.codes import generate_label_code, label_code_digest
from provisioning.security.keys import derive_subkey
from provisioning.services import Services
from provisioning.storage.devices import Device
from provisioning.storage.models import Account
from tests.fixtures.mosquitto import LocalPki


@dataclasses.dataclass(frozen=True)
class FactoryDevice:
    """A registered device and what only the device (and its label) knows."""

    serial: str
    code: str | None
    key: ec.EllipticCurvePrivateKey

    def proof(self, token: str, nonce: bytes = b"\x07" * DEVICE_NONCE_LEN) -> tuple[bytes, bytes]:
        """Sign a zn-bind proof for a pairing token."""
        return nonce, sign_bind_proof(self.key, token.encode(), self.serial, nonce)


RegisterDevice = Callable[..., Awaitable[FactoryDevice]]


@pytest.fixture
def register_device(services: Services, device_pki: LocalPki) -> RegisterDevice:
    """Return a function that manufactures and registers one device."""

    async def register(
        serial: str, device_type: str = "camera", *, with_code: bool = True
    ) -> FactoryDevice:
        creds = device_pki.mint_device(serial)
        code = generate_label_code() if with_code else None
        pepper = services.secrets.pepper.get_secret_value()
        digest = (
            label_code_digest(derive_subkey(pepper, "label-codes"), serial, code) if code else None
        )
        async with services.db.session() as session:
            session.add(
                Device(
                    serial=serial,
                    model="CAM-100" if device_type == "camera" else "LOCK-2",
                    device_type=device_type,
                    capabilities=["wifi", "ble"] if device_type != "lock" else ["ble"],
                    label_code_digest=digest,
                    firmware_version="1.0.0",
                    certificate_pem=certificate_pem(creds.certificate).decode(),
                    certificate_fingerprint=certificate_fingerprint(creds.certificate),
                    certificate_serial=format(creds.certificate.serial_number, "x"),
                    import_digest=hashlib.sha256(serial.encode()).hexdigest(),
                    imported_at=services.clock.now(),
                )
            )
            await session.commit()
        key = serialization.load_pem_private_key(creds.key_file.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return FactoryDevice(serial, code, key)

    return register


MakeAccounts = Callable[[int], Awaitable[list[Principal]]]


@pytest.fixture
def make_accounts(services: Services) -> MakeAccounts:
    """Return a function that inserts N bare accounts (for load and race tests)."""

    async def make(count: int) -> list[Principal]:
        now = services.clock.now()
        ids = [uuid.uuid4() for _ in range(count)]
        async with services.db.session() as session:
            session.add_all(
                Account(id=i, password_hash="!", created_at=now, updated_at=now) for i in ids
            )
            await session.commit()
        return [Principal(i, uuid.uuid4()) for i in ids]

    return make
