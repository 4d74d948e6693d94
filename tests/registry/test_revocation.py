"""Revocation: the registry, the CRL and a real Mosquitto from the project config."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from gateway.mqtt.broker import BrokerRefused, client_tls_context, connect_mqtt
from provisioning.clock import SystemClock
from provisioning.config import Secrets
from provisioning.domain.registry import (
    CaPaths,
    DeviceRegistry,
    is_bindable,
)
from provisioning.errors import DeviceNotFound
from provisioning.security import ca as device_ca
from provisioning.security.crl import read_crl
from provisioning.security.errors import CrlInvalid
from provisioning.services import Services
from tests.fixtures.mosquitto import PKI_PASSPHRASE, LocalPki, running_broker
from tests.registry.factory import camera_row, csr_rows, serial_of, write_jsonl

REFUSAL_WAIT = 1.0  # TLS 1.3 refusals show as "no CONNACK"


async def _openssl_verify(ca_file: Path, cert_file: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        "openssl",
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        str(ca_file),
        str(cert_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def _refused_and_accepted(
    host: str, port: int, *, refused: ssl.SSLContext, accepted: ssl.SSLContext
) -> None:
    with pytest.raises(BrokerRefused):
        async with connect_mqtt(host, port, refused, connack_timeout=REFUSAL_WAIT):
            pass
    async with connect_mqtt(host, port, accepted):
        pass


async def test_imported_devices_connect_until_revoked_then_the_broker_refuses_them(
    services: Services, secrets: Secrets, device_pki: LocalPki, tmp_path: Path
) -> None:
    # The registry signs with the CA the broker trusts and writes the CRL it loads.
    paths = CaPaths(
        ca_dir=device_pki.directory / "ca",
        crl_file=device_pki.crl_file,
        server_cert_file=device_pki.server_cert_file,
        server_key_file=device_pki.server_key_file,
        bridge_cert_file=device_pki.bridge_cert_file,
        bridge_key_file=device_pki.bridge_key_file,
        broker_pid_file=tmp_path / "no-such.pid",
    )
    registry = DeviceRegistry(
        db=services.db,
        clock=SystemClock(),  # the broker checks the CRL against real time
        pepper=secrets.pepper.get_secret_value(),
        paths=paths,
        ca_passphrase=PKI_PASSPHRASE,
    )
    flash = tmp_path / "flash"
    # A device that made its own key and CSR (real manufacturing) ...
    real = tmp_path / "real-device"
    csr = device_ca.make_device_csr(serial_of(1), real / "device.key.pem").decode()
    rows = [camera_row(0), camera_row(1, csr=csr)]
    rows[0].pop("label_code")  # ... and one made by the tool (simulated manufacturing).
    summary = await registry.import_file(
        write_jsonl(tmp_path / "f.jsonl", rows), generate_into=flash
    )
    assert summary.imported == 2
    (real / "device.crt.pem").write_text((await registry.get(serial_of(1))).certificate_pem)

    simulated_cert = flash / serial_of(0) / "device.crt.pem"
    assert "OK" in await _openssl_verify(paths.ca_cert_file, simulated_cert)
    assert "OK" in await _openssl_verify(paths.ca_cert_file, real / "device.crt.pem")
    simulated = client_tls_context(
        flash / serial_of(0) / "ca.crt.pem", simulated_cert, flash / serial_of(0) / "device.key.pem"
    )
    genuine = client_tls_context(
        paths.ca_cert_file, real / "device.crt.pem", real / "device.key.pem"
    )
    # The broker lives in its own directory: the data dir fixture owns tmp_path/data.
    async with running_broker(device_pki, tmp_path / "broker") as broker:
        registry.broker = broker
        host, port = broker.host, broker.port
        for context in (simulated, genuine):
            async with connect_mqtt(host, port, context):
                pass

        outcome = await registry.revoke(serial_of(0), "key_compromise")

        await _refused_and_accepted(host, port, refused=simulated, accepted=genuine)

    assert outcome.crl.broker_reloaded
    assert outcome.crl.crl.revoked_count == 1
    assert not is_bindable(await registry.get(serial_of(0)))
    assert is_bindable(await registry.get(serial_of(1)))


async def test_revoke_marks_the_device_and_lists_its_certificate_in_the_crl(
    registry: DeviceRegistry, premade_csrs: list[str], tmp_path: Path
) -> None:
    await registry.import_file(write_jsonl(tmp_path / "f.jsonl", csr_rows(3, premade_csrs)))
    before = await registry.get(serial_of(1))
    assert is_bindable(before)

    outcome = await registry.revoke(serial_of(1), "key-compromise")

    device = await registry.get(serial_of(1))
    assert not is_bindable(device)
    assert (device.revoked_at, device.revoked_reason) == (registry.clock.now(), "key_compromise")
    assert not outcome.already_revoked
    assert not outcome.crl.broker_reloaded  # no broker was given
    crl = read_crl(registry.paths.crl_file)
    assert crl is not None
    entry = crl.get_revoked_certificate_by_serial_number(int(before.certificate_serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise
    )
    assert len(crl) == 1
    assert is_bindable(await registry.get(serial_of(2)))


async def test_revoking_twice_keeps_the_first_revocation_and_rewrites_the_crl(
    registry: DeviceRegistry, premade_csrs: list[str], tmp_path: Path
) -> None:
    await registry.import_file(write_jsonl(tmp_path / "f.jsonl", csr_rows(2, premade_csrs)))
    first = await registry.revoke(serial_of(0), "superseded")

    second = await registry.revoke(serial_of(0), "key_compromise")

    assert second.already_revoked
    assert (second.revoked_at, second.reason) == (first.revoked_at, "superseded")
    assert second.crl.crl.number == first.crl.crl.number + 1
    assert second.crl.crl.revoked_count == 1


async def test_revoking_an_unknown_serial_or_with_an_unknown_reason_changes_nothing(
    registry: DeviceRegistry, premade_csrs: list[str], tmp_path: Path
) -> None:
    await registry.import_file(write_jsonl(tmp_path / "f.jsonl", csr_rows(1, premade_csrs)))
    with pytest.raises(DeviceNotFound):
        await registry.revoke("ZC1-9999999", "key_compromise")
    with pytest.raises(CrlInvalid, match="unknown revocation reason"):
        await registry.revoke(serial_of(0), "felt like it")
    assert is_bindable(await registry.get(serial_of(0)))
    assert not registry.paths.crl_file.exists()


class _FailingBroker:
    """A broker hook that cannot reach its broker."""

    reloads = 0

    async def reload(self) -> None:
        self.reloads += 1
        raise OSError("no such process")


async def test_failed_broker_reload_is_reported_after_the_crl_is_written(
    registry: DeviceRegistry, premade_csrs: list[str], tmp_path: Path
) -> None:
    await registry.import_file(write_jsonl(tmp_path / "f.jsonl", csr_rows(1, premade_csrs)))
    broker = _FailingBroker()
    registry.broker = broker

    outcome = await registry.revoke(serial_of(0), "key_compromise")

    assert broker.reloads == 1
    assert not outcome.crl.broker_reloaded
    assert outcome.crl.broker_error == "no such process"
    crl = read_crl(registry.paths.crl_file)
    assert crl is not None
    assert len(crl) == 1
