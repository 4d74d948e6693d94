"""Broker credentials for ``zanuo serve``: created once, refreshed only when needed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509

from gateway.mqtt.broker import (
    ManagedMosquitto,
    client_tls_context,
    connect_mqtt,
    free_local_port,
    prepare_broker_credentials,
    render_broker_config,
)
from provisioning.clock import FrozenClock, SystemClock
from provisioning.security import ca as device_ca
from provisioning.security.crl import Revocation, read_crl
from tests.fixtures.mosquitto import PKI_PASSPHRASE


def _fingerprints(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def test_credentials_are_created_once_and_left_alone_while_valid(tmp_path: Path) -> None:
    clock = SystemClock()
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    first = prepare_broker_credentials(authority, tmp_path / "broker", clock, revoked={})
    before = _fingerprints(tmp_path / "broker")
    assert set(before) >= {
        "ca.crt.pem",
        "server.crt.pem",
        "server.key.pem",
        "crl.pem",
        "bridge.crt.pem",
        "bridge.key.pem",
    }
    again = prepare_broker_credentials(authority, tmp_path / "broker", clock, revoked={})
    assert again == first
    assert _fingerprints(tmp_path / "broker") == before


def test_changed_hosts_or_near_expiry_reissue_only_what_is_due(tmp_path: Path) -> None:
    clock = FrozenClock(dt.datetime.now(dt.UTC))
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    creds = prepare_broker_credentials(authority, tmp_path / "broker", clock, revoked={})
    bridge_before = creds.bridge_cert_file.read_bytes()

    prepare_broker_credentials(
        authority, tmp_path / "broker", clock, revoked={}, hosts=["127.0.0.1", "mqtt.example"]
    )
    server = device_ca.read_certificate(creds.tls.cert_file)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mqtt.example"]
    assert creds.bridge_cert_file.read_bytes() == bridge_before

    revoked = {1234: Revocation(clock.now())}
    clock.advance(dt.timedelta(days=380))  # server cert within 30 days of expiry, CRL overdue
    prepare_broker_credentials(
        authority, tmp_path / "broker", clock, revoked=revoked, hosts=["127.0.0.1", "mqtt.example"]
    )
    renewed = device_ca.read_certificate(creds.tls.cert_file)
    assert renewed.not_valid_after_utc > clock.now() + dt.timedelta(days=300)
    crl = read_crl(creds.tls.crl_file)
    assert crl is not None
    assert crl.get_revoked_certificate_by_serial_number(1234) is not None


async def test_prepared_credentials_run_the_broker_and_the_bridge(tmp_path: Path) -> None:
    clock = SystemClock()
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    creds = prepare_broker_credentials(authority, tmp_path / "broker", clock, revoked={})
    config = render_broker_config(tmp_path / "data", creds.tls, port=free_local_port())
    async with ManagedMosquitto(config) as broker:
        context = client_tls_context(
            creds.tls.ca_file, creds.bridge_cert_file, creds.bridge_key_file
        )
        async with connect_mqtt(broker.host, broker.port, context) as bridge:
            await bridge.subscribe("zn/#", qos=1)
    assert "u'bridge'" in broker.log_text()
