"""Presence, broker isolation between devices, client-id takeover and revocation."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest
from prometheus_client import generate_latest

from gateway.mqtt import topics
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import BrokerRefused, ManagedMosquitto, connect_mqtt
from provisioning.cli.bridge_cmd import format_status
from provisioning.services import Services
from provisioning.storage.devices import Device, Event
from tests.bridge.conftest import (
    OwnDevice,
    cut_connection,
    device_client,
    eventually,
    next_message,
    publish_json,
    running_bridge,
    sample,
)
from tests.fixtures.mosquitto import LocalPki


def metrics_text(services: Services) -> str:
    """Return what ``/metrics`` serves for these services."""
    return generate_latest(services.metrics.registry).decode()


async def _device_online(services: Services, serial: str) -> bool | None:
    async with services.db.session() as session:
        device = await session.get(Device, serial)
        return None if device is None else device.online


async def _event_count(services: Services, serial: str) -> int:
    async with services.db.session() as session:
        from sqlalchemy import func, select

        count = await session.scalar(
            select(func.count()).select_from(Event).where(Event.serial == serial)
        )
        return int(count or 0)


async def test_device_goes_online_and_offline_again_after_its_lwt(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    creds, _ = await own_device("ZC1-PRES-0001")
    client = device_client(creds, mosquitto_broker)
    await client.__aenter__()
    try:
        await publish_json(
            client,
            topics.state_topic(creds.serial),
            {"online": True, "firmware": "1.2.3", "network": "wifi"},
            retain=True,
        )

        async def online() -> bool:
            return await _device_online(services, creds.serial) is True

        await eventually(online)
        assert sample(services, "zanuo_devices_online") == 1
        status = format_status(metrics_text(services))
        assert "devices online:   1" in status
        assert "connected:        yes" in status
        async with services.db.session() as session:
            device = await session.get(Device, creds.serial)
            assert device is not None
            assert (device.reported_firmware, device.network_type) == ("1.2.3", "wifi")
            assert device.last_seen_at is not None

        cut_connection(client)

        async def offline() -> bool:
            return await _device_online(services, creds.serial) is False

        await eventually(offline)
        assert sample(services, "zanuo_devices_online") == 0
        assert "devices online:   0" in format_status(metrics_text(services))
    finally:
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await client.__aexit__(None, None, None)


async def test_device_cannot_read_or_write_another_devices_topics(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    mallory, _ = await own_device("ZC1-MALL-0001")
    victim, _ = await own_device("ZC1-VICT-0001")
    async with (
        device_client(mallory, mosquitto_broker) as attacker,
        device_client(victim, mosquitto_broker) as target,
    ):
        await attacker.subscribe(f"zn/v1/{victim.serial}/#", qos=1)
        await attacker.subscribe("zn/#", qos=1)
        # Forged event on the victim's topic: the broker drops it.
        await publish_json(
            attacker,
            topics.device_topic(victim.serial, topics.Inbound.EVENT),
            {"id": "forged-1", "type": "motion", "ts": "2026-11-02T09:00:00Z"},
        )
        # A genuine event from the victim: the bridge stores it, the attacker sees nothing.
        await publish_json(
            target,
            topics.device_topic(victim.serial, topics.Inbound.EVENT),
            {"id": "real-1", "type": "motion", "ts": "2026-11-02T09:00:01Z"},
        )

        async def stored() -> bool:
            return await _event_count(services, victim.serial) == 1

        await eventually(stored)
        # The victim's own event was stored; a marker on the attacker's own
        # topic proves its subscription works and nothing else arrived first.
        await publish_json(target, topics.device_topic(victim.serial, topics.Inbound.RESET), {})
        await publish_json(
            attacker,
            topics.device_topic(mallory.serial, topics.Inbound.CMD_ACK),
            {"id": "marker", "ok": True},
        )
        async with asyncio.timeout(10):
            message = await anext(aiter(attacker.messages))
        assert message.topic.value == topics.device_topic(mallory.serial, topics.Inbound.CMD_ACK)
    async with services.db.session() as session:
        from sqlalchemy import select

        ids = (await session.scalars(select(Event.event_id))).all()
    assert "forged-1" not in ids


async def test_device_cannot_knock_the_bridge_off_by_reusing_client_ids(
    services: Services,
    device_pki: LocalPki,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    creds, _ = await own_device("ZC1-KICK-0001")
    async with running_bridge(
        services, device_pki, mosquitto_broker, group="zanuo-bridge"
    ) as bridge:
        # The bridges' retained client ids are out of a device's reach.
        async with device_client(creds, mosquitto_broker) as snoop:
            await snoop.subscribe("zn/bridge/#", qos=1)
            await snoop.subscribe(topics.device_topic(creds.serial, topics.Inbound.CMD_ACK), qos=1)
            await publish_json(
                snoop,
                topics.device_topic(creds.serial, topics.Inbound.CMD_ACK),
                {"id": "marker", "ok": True},
            )
            async with asyncio.timeout(10):
                first = await next_message(snoop)
            assert first.topic.value == topics.device_topic(creds.serial, topics.Inbound.CMD_ACK)
        for guess in ("bridge", "zanuo-bridge", bridge.options.instance, "zb-", "zanuo"):
            async with device_client(creds, mosquitto_broker, client_id=guess):
                pass
        # The bridge never lost its connection: it still handles traffic, no reconnect counted.
        async with device_client(creds, mosquitto_broker) as device:
            await publish_json(
                device,
                topics.device_topic(creds.serial, topics.Inbound.EVENT),
                {"id": "after-guesses", "type": "motion", "ts": "2026-11-02T09:00:00Z"},
            )

            async def stored() -> bool:
                return await _event_count(services, creds.serial) == 1

            await eventually(stored)
        assert bridge.reconnects == 0
        assert sample(services, "zanuo_bridge_reconnects_total") == 0
        assert bridge.connected


async def test_revoked_device_is_refused_and_its_open_session_is_ended(
    services: Services,
    device_pki: LocalPki,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    creds, _ = await own_device("ZC1-REVK-0001")
    async with running_bridge(
        services,
        device_pki,
        mosquitto_broker,
        crl_file=device_pki.crl_file,
        crl_poll_s=0.1,
    ) as bridge:
        client = device_client(creds, mosquitto_broker)
        await client.__aenter__()
        try:
            await publish_json(
                client, topics.state_topic(creds.serial), {"online": True}, retain=True
            )

            async def online() -> bool:
                return await _device_online(services, creds.serial) is True

            await eventually(online)
            device_pki.revoke(creds)
            await mosquitto_broker.reload()

            # The bridge notices the new CRL and ends the session by takeover.
            async def disconnected() -> bool:
                try:
                    await client.publish("zn/v1/probe", b"", qos=0)
                except aiomqtt.MqttError:
                    return True
                return False

            await eventually(disconnected, within=10)

            async def kicked() -> bool:
                return bridge.kicks == 1

            await eventually(kicked)

            async def offline() -> bool:
                return await _device_online(services, creds.serial) is False

            await eventually(offline)
        finally:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await client.__aexit__(None, None, None)
        with pytest.raises(BrokerRefused):
            async with connect_mqtt(
                mosquitto_broker.host,
                mosquitto_broker.port,
                creds.tls_context(),
                identifier=creds.serial,
            ):
                pass
