"""Sealed secrets open only on the right device, for the right command, untampered."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from provisioning.security.errors import SealError
from provisioning.security.sealing import decode_envelope_text, open_sealed, seal, seal_text
from tests.fixtures.mosquitto import DeviceCredentials, LocalPki

WIFI = b'{"ssid":"home","passphrase":"canary-wifi-password-7781"}'


def _device_key(device: DeviceCredentials) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(Path(device.key_file).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.fixture
def camera(device_pki: LocalPki) -> DeviceCredentials:
    return device_pki.mint_device("ZC1-0001")


def test_device_opens_what_was_sealed_to_its_certificate(camera: DeviceCredentials) -> None:
    sealed = seal(camera.certificate, WIFI, serial="ZC1-0001", command_id="cmd-1")
    assert WIFI not in sealed
    assert b"canary-wifi" not in sealed
    assert sealed[0] == 1
    assert len(sealed) == 1 + 33 + len(WIFI) + 16
    opened = open_sealed(_device_key(camera), sealed, serial="ZC1-0001", command_id="cmd-1")
    assert opened == WIFI


def test_text_envelope_round_trips_and_differs_every_time(camera: DeviceCredentials) -> None:
    first = seal_text(camera.certificate, WIFI, serial="ZC1-0001", command_id="cmd-1")
    second = seal_text(camera.certificate, WIFI, serial="ZC1-0001", command_id="cmd-1")
    assert first != second
    assert "=" not in first
    assert first.isascii()
    key = _device_key(camera)
    assert open_sealed(key, first, serial="ZC1-0001", command_id="cmd-1") == WIFI
    assert decode_envelope_text(second)[0] == 1


@pytest.mark.parametrize(
    ("serial", "command_id"), [("ZC1-0002", "cmd-1"), ("ZC1-0001", "cmd-2"), ("ZC1-000", "1cmd-1")]
)
def test_wrong_serial_or_command_id_cannot_open(
    camera: DeviceCredentials, serial: str, command_id: str
) -> None:
    sealed = seal(camera.certificate, WIFI, serial="ZC1-0001", command_id="cmd-1")
    with pytest.raises(SealError):
        open_sealed(_device_key(camera), sealed, serial=serial, command_id=command_id)


def test_another_devices_key_cannot_open(device_pki: LocalPki, camera: DeviceCredentials) -> None:
    other = device_pki.mint_device("ZC1-0002")
    sealed = seal(camera.certificate, WIFI, serial="ZC1-0001", command_id="cmd-1")
    with pytest.raises(SealError):
        open_sealed(_device_key(other), sealed, serial="ZC1-0001", command_id="cmd-1")


def test_sealing_to_a_certificate_of_another_serial_is_refused(camera: DeviceCredentials) -> None:
    with pytest.raises(SealError, match="does not belong"):
        seal(camera.certificate, WIFI, serial="ZC1-0002", command_id="cmd-1")


def test_non_p256_recipient_is_refused() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(SealError, match="P-256"):
        seal(p384, WIFI, serial="ZC1-0001", command_id="cmd-1")


def test_any_single_byte_change_is_detected(camera: DeviceCredentials) -> None:
    sealed = seal(camera.certificate, WIFI, serial="ZC1-0001", command_id="c")
    key = _device_key(camera)
    for index in range(len(sealed)):
        for flip in (0x01, 0x80):
            tampered = bytearray(sealed)
            tampered[index] ^= flip
            with pytest.raises(SealError):
                open_sealed(key, bytes(tampered), serial="ZC1-0001", command_id="c")


@pytest.mark.parametrize("cut", [0, 1, 34, 49])
def test_truncated_envelope_is_refused(camera: DeviceCredentials, cut: int) -> None:
    sealed = seal(camera.certificate, WIFI, serial="ZC1-0001", command_id="c")
    with pytest.raises(SealError):
        open_sealed(_device_key(camera), sealed[:cut], serial="ZC1-0001", command_id="c")


def test_garbage_text_envelope_is_refused(camera: DeviceCredentials) -> None:
    with pytest.raises(SealError, match="base64url"):
        open_sealed(_device_key(camera), "not*base64", serial="ZC1-0001", command_id="c")
    with pytest.raises(SealError, match="base64url"):
        open_sealed(_device_key(camera), "naïve", serial="ZC1-0001", command_id="c")
