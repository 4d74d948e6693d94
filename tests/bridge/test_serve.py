"""``zanuo serve`` with no broker configured runs, uses and stops its own Mosquitto."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
from pathlib import Path

import aiohttp
import aiomqtt
import pytest
from aiohttp import web
from cryptography import x509

from gateway.mqtt import topics
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import client_tls_context, free_local_port
from provisioning.cli import bridge_cmd
from provisioning.cli.bridge_cmd import format_status
from provisioning.cli.serve_cmd import BrokerEndpoint, serve_until
from provisioning.clock import SystemClock
from provisioning.config import Secrets, Settings, load_settings
from provisioning.domain.registry import CaPaths
from provisioning.security import ca as device_ca
from provisioning.storage.devices import Device
from provisioning.storage.engine import Database
from tests.bridge.conftest import eventually, publish_json

SERIAL = "ZC1-SERVE-0001"


@pytest.fixture
def serve_settings(settings: Settings, database: Database) -> Settings:
    """Return settings whose embedded broker listens on a free loopback port."""
    environ = {
        "ZANUO_PATHS__DATA_DIR": str(settings.data_dir),
        "ZANUO_SERVER__PORT": str(free_local_port()),
        "ZANUO_MQTT__MANAGED_PORT": str(free_local_port()),
    }
    if not database.is_sqlite:
        environ["ZANUO_DATABASE__URL"] = settings.database_url
    return load_settings(environ=environ)


async def _register(db: Database, certificate: x509.Certificate) -> None:
    async with db.session() as session:
        session.add(
            Device(
                serial=SERIAL,
                model="CAM-100",
                device_type="camera",
                capabilities=["wifi"],
                label_code_digest=None,
                firmware_version="1.0.0",
                certificate_pem=device_ca.certificate_pem(certificate).decode(),
                certificate_fingerprint=device_ca.certificate_fingerprint(certificate),
                certificate_serial=format(certificate.serial_number, "x"),
                import_digest=hashlib.sha256(SERIAL.encode()).hexdigest(),
                imported_at=SystemClock().now(),
            )
        )
        await session.commit()


async def test_serve_without_a_broker_url_starts_uses_and_stops_its_own_mosquitto(
    serve_settings: Settings,
    secrets: Secrets,
    database: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[web.AppRunner, MqttBridge, BrokerEndpoint]] = (
        asyncio.get_running_loop().create_future()
    )
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(
            serve_until(
                serve_settings,
                secrets,
                stop,
                on_ready=lambda *parts: ready.set_result(parts),
            )
        )
        _, bridge, endpoint = await asyncio.wait_for(ready, 60)
        broker = endpoint.managed
        assert broker is not None
        pid = broker.pid
        assert pid is not None
        paths = CaPaths.in_data_dir(serve_settings.data_dir)
        assert paths.broker_pid_file.read_text().strip() == str(pid)
        await asyncio.wait_for(bridge.wait_connected(), 30)

        # A device made by this service's CA connects to the embedded broker.
        authority = device_ca.load_ca(paths.ca_dir, secrets.ca_passphrase.get_secret_value())
        folder = tmp_path / "device"
        certificate = device_ca.manufacture_device(authority, SERIAL, folder, SystemClock())
        await _register(database, certificate)
        context = client_tls_context(
            folder / device_ca.DEVICE_CA_FILE,
            folder / device_ca.DEVICE_CERT_FILE,
            folder / device_ca.DEVICE_KEY_FILE,
        )
        async with aiomqtt.Client(
            endpoint.host, endpoint.port, identifier=SERIAL, tls_context=context, timeout=5
        ) as device:
            await publish_json(device, topics.state_topic(SERIAL), {"online": True}, retain=True)

            async def online() -> bool:
                async with database.session() as session:
                    row = await session.get(Device, SERIAL)
                    return row is not None and row.online

            await eventually(online)
        metrics_url = f"http://{serve_settings.server.host}:{serve_settings.server.port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(metrics_url) as response:
            status = format_status(await response.text())
        assert "connected:        yes" in status
        assert "devices online:   1" in status
        # `zanuo bridge status` reads the same from the running service.
        exit_code = await asyncio.to_thread(
            bridge_cmd.show_status, argparse.Namespace(url=None), serve_settings, secrets
        )
        assert exit_code == 0
        assert "devices online:   1" in capsys.readouterr().out
        stop.set()
    assert serving.result() == 0
    assert not _alive(pid)
    assert not paths.broker_pid_file.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
