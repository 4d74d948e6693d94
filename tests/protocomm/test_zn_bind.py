"""The ``zn-bind`` endpoint: token delivery, the device's signed proof, and its verification."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import AsyncIterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning.protocomm.bind import (
    BindRefused,
    BindRequest,
    bind_proof_message,
    sign_bind_proof,
    verify_bind_proof,
)
from provisioning.protocomm.client import Credentials
from provisioning.protocomm.errors import BindFailed, BindProofInvalid
from provisioning.protocomm.service import ProvisioningDevice
from simulators.wifi_world import WifiWorld

from .conftest import POP, SRP_PASSWORD, DeviceLink, ble_link, http_link, security_config

SERIAL = "ZNL-000042"
TOKEN = b"pairing-token-0123456789abcdef"


class LockBindHandler:
    """A code-less lock: keeps the token and signs with its device key."""

    def __init__(self, *, refuse: bool = False, signs: bool = True, broken: bool = False) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.accepted: list[BindRequest] = []
        self._refuse = refuse
        self._signs = signs
        self._broken = broken

    @property
    def serial(self) -> str:
        return SERIAL

    def signing_key(self) -> ec.EllipticCurvePrivateKey | None:
        return self.key if self._signs else None

    async def accept_bind(self, request: BindRequest) -> None:
        if self._refuse:
            raise BindRefused
        if self._broken:
            raise OSError("flash write failed")
        self.accepted.append(request)


def certificate_for(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """Return a self-signed certificate with CN = serial, like the device CA would issue."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERIAL)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture
async def lock(
    transport_name: str, wifi_world: WifiWorld
) -> AsyncIterator[tuple[DeviceLink, LockBindHandler]]:
    """Return a running sec2 lock with a bind handler over the parametrized transport."""
    handler = LockBindHandler()
    device = ProvisioningDevice(
        security_config("sec2"), wifi_world.station("lock"), bind_handler=handler
    )
    opener = http_link if transport_name == "http" else ble_link
    async with device, opener(device) as link:
        yield link, handler


async def test_bind_hands_token_to_device_and_returns_a_proof_the_cloud_verifies(
    lock: tuple[DeviceLink, LockBindHandler],
) -> None:
    link, handler = lock
    async with link.connect() as client:
        await client.establish_session(Credentials(pop=POP, password=SRP_PASSWORD))
        result = await client.bind(TOKEN, "mqtt.zanuo.example", 8883)
    assert handler.accepted == [BindRequest(TOKEN, "mqtt.zanuo.example", 8883)]
    assert result.serial == SERIAL
    assert len(result.device_nonce) == 16
    assert result.signature is not None
    verify_bind_proof(
        certificate_for(handler.key), TOKEN, result.serial, result.device_nonce, result.signature
    )


def test_proof_message_is_length_prefixed_token_serial_nonce() -> None:
    nonce = bytes(range(16))
    expected = (
        b"zn-bind-proof-v1"
        + struct.pack(">H", len(TOKEN))
        + TOKEN
        + b"\x00\x0a"
        + b"ZNL-000042"
        + b"\x00\x10"
        + nonce
    )
    assert bind_proof_message(TOKEN, SERIAL, nonce) == expected


@pytest.mark.parametrize(
    ("token", "serial", "nonce"),
    [
        (b"other-token", SERIAL, bytes(16)),
        (TOKEN, "ZNL-000043", bytes(16)),
        (TOKEN, SERIAL, b"\x01" + bytes(15)),
        # moving a byte between fields must not keep the signature valid
        (TOKEN + b"Z", "NL-000042", bytes(16)),
    ],
)
def test_proof_does_not_verify_for_another_token_serial_or_nonce(
    token: bytes, serial: str, nonce: bytes
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signature = sign_bind_proof(key, TOKEN, SERIAL, bytes(16))
    verify_bind_proof(key.public_key(), TOKEN, SERIAL, bytes(16), signature)
    with pytest.raises(BindProofInvalid):
        verify_bind_proof(key.public_key(), token, serial, nonce, signature)


def test_proof_from_another_device_key_is_refused() -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    registered = ec.generate_private_key(ec.SECP256R1())
    signature = sign_bind_proof(signer, TOKEN, SERIAL, bytes(16))
    with pytest.raises(BindProofInvalid):
        verify_bind_proof(certificate_for(registered), TOKEN, SERIAL, bytes(16), signature)


async def _bind_with(handler: LockBindHandler, wifi_world: WifiWorld, token: bytes) -> object:
    device = ProvisioningDevice(
        security_config("sec1"), wifi_world.station("x"), bind_handler=handler
    )
    async with device, http_link(device) as link, link.connect() as client:
        await client.establish_session(Credentials(pop=POP))
        return await client.bind(token, "mqtt.zanuo.example", 8883)


async def test_device_refusing_the_token_answers_bind_rejected(wifi_world: WifiWorld) -> None:
    with pytest.raises(BindFailed) as failure:
        await _bind_with(LockBindHandler(refuse=True), wifi_world, TOKEN)
    assert failure.value.status == "BindRejected"


async def test_empty_token_answers_bind_invalid_argument(wifi_world: WifiWorld) -> None:
    handler = LockBindHandler()
    with pytest.raises(BindFailed) as failure:
        await _bind_with(handler, wifi_world, b"")
    assert failure.value.status == "BindInvalidArgument"
    assert handler.accepted == []


async def test_camera_with_label_code_answers_without_signature(wifi_world: WifiWorld) -> None:
    result = await _bind_with(LockBindHandler(signs=False), wifi_world, TOKEN)
    assert getattr(result, "signature", "missing") is None


async def test_device_failing_to_store_the_token_answers_bind_internal_error(
    wifi_world: WifiWorld,
) -> None:
    with pytest.raises(BindFailed) as failure:
        await _bind_with(LockBindHandler(broken=True), wifi_world, TOKEN)
    assert failure.value.status == "BindInternalError"
