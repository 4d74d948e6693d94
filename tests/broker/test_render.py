"""Rendering the project's Mosquitto template into a data dir."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from gateway.mqtt.broker import BrokerTlsFiles, render_broker_config
from provisioning.errors import ConfigError
from tests.fixtures.mosquitto import LocalPki


def _directives(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_rendered_config_enforces_mutual_tls_acl_and_crl(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    config = render_broker_config(tmp_path / "data", device_pki.broker_tls_files(), port=18883)
    directives = _directives(config.config_file)
    expected = [
        "per_listener_settings false",
        "allow_anonymous false",
        f"acl_file {config.acl_file}",
        f"user {pwd.getpwuid(os.geteuid()).pw_name}",
        "persistence true",
        f"persistence_location {config.persistence_dir}",
        "set_tcp_nodelay true",
        "listener 18883 127.0.0.1",
        f"cafile {device_pki.ca_file.resolve()}",
        f"certfile {device_pki.server_cert_file.resolve()}",
        f"keyfile {device_pki.server_key_file.resolve()}",
        f"crlfile {device_pki.crl_file.resolve()}",
        "require_certificate true",
        "use_identity_as_username true",
    ]
    for directive in expected:
        assert directive in directives
    assert "{{" not in config.config_file.read_text()
    assert config.persistence_dir.is_dir()
    assert config.directory == (tmp_path / "data" / "mosquitto").resolve()


def test_rendered_acl_confines_devices_and_gives_the_bridge_zn(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    config = render_broker_config(tmp_path / "data", device_pki.broker_tls_files(), port=18883)
    assert _directives(config.acl_file) == [
        "pattern readwrite zn/v1/%u/#",
        "user bridge",
        "topic readwrite zn/#",
    ]


def test_path_with_spaces_is_refused_before_mosquitto_misreads_it(
    device_pki: LocalPki, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="whitespace"):
        render_broker_config(tmp_path / "my data", device_pki.broker_tls_files(), port=18883)


def test_missing_tls_file_is_named(device_pki: LocalPki, tmp_path: Path) -> None:
    files = device_pki.broker_tls_files()
    broken = BrokerTlsFiles(
        ca_file=files.ca_file,
        cert_file=files.cert_file,
        key_file=files.key_file,
        crl_file=tmp_path / "absent-crl.pem",
    )
    with pytest.raises(ConfigError, match="crl_file"):
        render_broker_config(tmp_path / "data", broken, port=18883)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_out_of_range_is_a_config_error(
    device_pki: LocalPki, tmp_path: Path, port: int
) -> None:
    with pytest.raises(ConfigError, match="port"):
        render_broker_config(tmp_path / "data", device_pki.broker_tls_files(), port=port)
