"""Binding over MQTT and the remote Wi-Fi change, down to the device that opens it."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.mqtt import topics
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import ManagedMosquitto
from provisioning.api import wifi
from provisioning.app import create_app
from provisioning.config import Secrets, Settings
from provisioning.notify.delivery import OutboxSender
from provisioning.security import sealing
from provisioning.services import Services
from provisioning.storage.devices import Device
from tests.api.accounts_helpers import bearer, register
from tests.bridge.conftest import (
    credentials_of,
    device_client,
    eventually,
    next_message,
    publish_json,
    running_bridge,
    sample,
)
from tests.fixtures.devices import FactoryDevice, RegisterDevice
from tests.fixtures.mosquitto import DeviceCredentials, LocalPki, running_broker

Client = TestClient[Any, Any]
CANARY = "canary-Wifi-Pass-7f3a9c"


@contextlib.asynccontextmanager
async def api_with_bridge(
    settings: Settings, secrets: Secrets, services: Services, bridge: MqttBridge
) -> AsyncIterator[Client]:
    """Serve the API with the Wi-Fi routes and the bridge as command sender, as the CLI does."""

    @contextlib.asynccontextmanager
    async def given() -> AsyncIterator[Services]:
        yield services

    app = create_app(settings, secrets, services=given)
    app[wifi.COMMAND_SENDER_KEY] = bridge
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def api(
    settings: Settings, secrets: Secrets, services: Services, bridge: MqttBridge
) -> AsyncIterator[Client]:
    """Return an HTTP client for the app wired to the running bridge."""
    async with api_with_bridge(settings, secrets, services, bridge) as client:
        yield client


def _key(creds: DeviceCredentials) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(creds.key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


async def _bind_over_http(
    api: Client, services: Services, token: str, camera: FactoryDevice
) -> None:
    issued = await (
        await api.post(
            "/v1/bindings",
            json={"serial": camera.serial, "verification_code": camera.code},
            headers=bearer(token),
        )
    ).json()
    assert (await services.binding.confirm(camera.serial, issued["bind_token"])).bound


async def _go_online(services: Services, device: aiomqtt.Client, serial: str) -> None:
    await publish_json(device, topics.state_topic(serial), {"online": True}, retain=True)

    async def online() -> bool:
        async with services.db.session() as session:
            row = await session.get(Device, serial)
            return row is not None and row.online

    await eventually(online)


async def test_device_confirms_its_binding_over_mqtt_and_gets_the_result(
    api: Client,
    outbox: OutboxSender,
    device_pki: LocalPki,
    mosquitto_broker: ManagedMosquitto,
    register_device: RegisterDevice,
) -> None:
    me = await register(api, outbox, "binder@example.com")
    camera = await register_device("ZC1-BIND-0001")
    issued = await (
        await api.post(
            "/v1/bindings",
            json={"serial": camera.serial, "verification_code": camera.code},
            headers=bearer(me["token"]),
        )
    ).json()
    creds = credentials_of(device_pki, camera.serial)
    async with device_client(creds, mosquitto_broker) as device:
        await device.subscribe(
            topics.device_topic(camera.serial, topics.Outbound.BIND_RESULT), qos=1
        )
        for _ in range(2):  # a QoS 1 redelivery is answered "bound" again
            await publish_json(
                device,
                topics.device_topic(camera.serial, topics.Inbound.BIND),
                {"token": issued["bind_token"]},
            )
            result = json.loads((await next_message(device)).payload)
            assert result == {"status": "bound"}
        await publish_json(
            device,
            topics.device_topic(camera.serial, topics.Inbound.BIND),
            {"token": "zb-wrong-token"},
        )
        rejected = json.loads((await next_message(device)).payload)
        assert rejected == {"status": "rejected", "reason": "token_invalid"}
    polled = await (
        await api.get(f"/v1/bindings/{issued['binding_id']}", headers=bearer(me["token"]))
    ).json()
    assert polled["state"] == "bound"


async def test_wifi_change_reaches_the_online_device_which_decrypts_it(
    api: Client,
    outbox: OutboxSender,
    services: Services,
    device_pki: LocalPki,
    mosquitto_broker: ManagedMosquitto,
    register_device: RegisterDevice,
) -> None:
    me = await register(api, outbox, "wifi@example.com")
    camera = await register_device("ZC1-WIFI-0001")
    await _bind_over_http(api, services, me["token"], camera)
    creds = credentials_of(device_pki, camera.serial)
    async with device_client(creds, mosquitto_broker) as device:
        await device.subscribe(topics.device_topic(camera.serial, topics.Outbound.CMD), qos=1)
        await _go_online(services, device, camera.serial)

        # Plain over TLS: the service seals it in memory.
        response = await api.post(
            f"/v1/devices/{camera.serial}/wifi",
            json={"ssid": "Home", "passphrase": CANARY, "bssid": "aa:bb:cc:dd:ee:ff"},
            headers=bearer(me["token"]),
        )
        assert response.status == 202, await response.text()
        sent = await response.json()
        message = await next_message(device)
        assert not message.retain
        assert message.properties is not None
        assert 0 < getattr(message.properties, "MessageExpiryInterval", 0) <= 30
        command = json.loads(message.payload)
        assert command["id"] == sent["command_id"]
        assert command["name"] == "wifi"
        assert CANARY.encode() not in message.payload
        opened = sealing.open_sealed(
            _key(creds), command["args"]["sealed"], serial=camera.serial, command_id=command["id"]
        )
        assert json.loads(opened) == {
            "ssid": "Home",
            "passphrase": CANARY,
            "bssid": "aa:bb:cc:dd:ee:ff",
        }
        await publish_json(
            device,
            topics.device_topic(camera.serial, topics.Inbound.CMD_ACK),
            {"id": command["id"], "ok": True},
        )

        # Sealed by the app for a command id it chose.
        recipient = await api.get(
            f"/v1/devices/{camera.serial}/wifi/recipient", headers=bearer(me["token"])
        )
        assert recipient.status == 200
        certificate = x509.load_pem_x509_certificate(
            (await recipient.json())["certificate_pem"].encode()
        )
        command_id = str(uuid.uuid4())
        envelope = sealing.seal_text(
            certificate,
            b'{"ssid":"Cabin","passphrase":"another-secret"}',
            serial=camera.serial,
            command_id=command_id,
        )
        response = await api.post(
            f"/v1/devices/{camera.serial}/wifi",
            json={"sealed": envelope, "command_id": command_id},
            headers=bearer(me["token"]),
        )
        assert response.status == 202, await response.text()
        command = json.loads((await next_message(device)).payload)
        assert command["id"] == command_id
        assert json.loads(
            sealing.open_sealed(
                _key(creds), command["args"]["sealed"], serial=camera.serial, command_id=command_id
            )
        ) == {"ssid": "Cabin", "passphrase": "another-secret"}

    async def acked() -> bool:
        return sample(services, "zanuo_commands_total", name="wifi", outcome="acked") == 1

    await eventually(acked)


async def test_wifi_change_is_refused_for_an_offline_device_and_for_a_shared_user(
    api: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
) -> None:
    owner = await register(api, outbox, "owner-wifi@example.com")
    guest = await register(api, outbox, "guest-wifi@example.com")
    camera = await register_device("ZC1-WIFI-0002")
    await _bind_over_http(api, services, owner["token"], camera)
    body = {"ssid": "Home", "passphrase": CANARY}

    offline = await api.post(
        f"/v1/devices/{camera.serial}/wifi", json=body, headers=bearer(owner["token"])
    )
    assert offline.status == 409
    assert (await offline.json())["error"]["code"] == "device_offline"

    await api.post(
        f"/v1/devices/{camera.serial}/shares",
        json={"email": "guest-wifi@example.com", "permission": "control"},
        headers=bearer(owner["token"]),
    )
    invitations = await (await api.get("/v1/invitations", headers=bearer(guest["token"]))).json()
    await api.post(
        f"/v1/invitations/{invitations['shares'][0]['share_id']}/accept",
        headers=bearer(guest["token"]),
    )
    shared = await api.post(
        f"/v1/devices/{camera.serial}/wifi", json=body, headers=bearer(guest["token"])
    )
    assert shared.status == 403
    assert (await shared.json())["error"]["code"] == "not_owner"

    both = await api.post(
        f"/v1/devices/{camera.serial}/wifi",
        json={**body, "sealed": "A" * 80, "command_id": str(uuid.uuid4())},
        headers=bearer(owner["token"]),
    )
    assert both.status == 422
    assert CANARY not in await both.text()
    assert sample(services, "zanuo_commands_total", name="wifi", outcome="offline") == 1
    document = await (await api.get("/openapi.json")).json()
    assert "post" in document["paths"]["/v1/devices/{serial}/wifi"]
    assert "get" in document["paths"]["/v1/devices/{serial}/wifi/recipient"]


def _files_under(*roots: Path) -> list[Path]:
    return [path for root in roots for path in root.rglob("*") if path.is_file()]


@pytest.mark.sqlite_only
async def test_canary_wifi_password_is_found_nowhere_afterwards(
    settings: Settings,
    secrets: Secrets,
    services: Services,
    outbox: OutboxSender,
    device_pki: LocalPki,
    register_device: RegisterDevice,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen_by_device: list[bytes] = []
    async with running_broker(device_pki, tmp_path / "canary-broker") as broker:
        async with (
            running_bridge(services, device_pki, broker) as bridge,
            api_with_bridge(settings, secrets, services, bridge) as api,
        ):
            me = await register(api, outbox, "canary@example.com")
            camera = await register_device("ZC1-CANARY-01")
            await _bind_over_http(api, services, me["token"], camera)
            creds = credentials_of(device_pki, camera.serial)
            async with device_client(creds, broker) as device:
                await device.subscribe(
                    topics.device_topic(camera.serial, topics.Outbound.CMD), qos=1
                )
                await _go_online(services, device, camera.serial)
                response = await api.post(
                    f"/v1/devices/{camera.serial}/wifi",
                    json={"ssid": "Home", "passphrase": CANARY},
                    headers=bearer(me["token"]),
                )
                assert response.status == 202
                message = await next_message(device)
                assert isinstance(message.payload, bytes)
                seen_by_device.append(message.payload)
                envelope = json.loads(message.payload)["args"]["sealed"]
                await publish_json(
                    device,
                    topics.device_topic(camera.serial, topics.Inbound.CMD_ACK),
                    {"id": json.loads(message.payload)["id"], "ok": True},
                )
            # A refused attempt must not leave the password behind either.
            refused = await api.post(
                f"/v1/devices/{camera.serial}/wifi",
                json={"ssid": "Home", "passphrase": CANARY, "gps": [1, 2]},
                headers=bearer(me["token"]),
            )
            assert refused.status == 422
        persistence = broker.config.persistence_dir / "mosquitto.db"
    # The broker has exited and written its persistence file; the WAL is still there.
    assert persistence.is_file()
    data_files = _files_under(settings.data_dir)
    assert any(path.name.endswith("-wal") for path in data_files)
    needles = [CANARY.encode(), envelope.encode()]
    for path in [*data_files, *_files_under(broker.config.directory)]:
        content = path.read_bytes()
        for needle in needles:
            assert needle not in content, f"found a Wi-Fi secret in {path}"
    for needle in needles:
        assert needle.decode() not in caplog.text
    assert seen_by_device  # the device did get it, sealed


async def test_hub_pairs_a_new_lock_only_with_the_locks_signed_proof(
    api: Client,
    outbox: OutboxSender,
    services: Services,
    device_pki: LocalPki,
    mosquitto_broker: ManagedMosquitto,
    register_device: RegisterDevice,
) -> None:
    me = await register(api, outbox, "hub-owner@example.com")
    hub = await register_device("ZC1-HUB-0002")
    await _bind_over_http(api, services, me["token"], hub)
    lock = await register_device("ZC1-LOCK-0003", "lock", with_code=False)
    issued = await (await api.post("/v1/pairing-tokens", headers=bearer(me["token"]))).json()
    token = issued["pairing_token"]
    bind_topic = topics.device_topic(lock.serial, topics.Inbound.BIND, hub=hub.serial)
    async with device_client(credentials_of(device_pki, hub.serial), mosquitto_broker) as client:
        await client.subscribe(
            topics.device_topic(lock.serial, topics.Outbound.BIND_RESULT, hub=hub.serial), qos=1
        )
        # Without the lock's proof, the hub is not believed: not its child yet.
        await publish_json(client, bind_topic, {"token": token})

        async def refused() -> bool:
            return sample(services, "zanuo_mqtt_dropped_total", reason="unknown_child") == 1

        await eventually(refused)
        nonce, signature = lock.proof(token)
        await publish_json(
            client,
            bind_topic,
            {
                "token": token,
                "proof": {
                    "nonce": base64.b64encode(nonce).decode(),
                    "signature": base64.b64encode(signature).decode(),
                },
            },
        )
        result = json.loads((await next_message(client)).payload)
        assert result == {"status": "bound"}
    async with services.db.session() as session:
        row = await session.get(Device, lock.serial)
        assert row is not None
        assert (row.parent_serial, row.network_type) == (hub.serial, "ble")
