"""The device MQTT session on its own, watched by a client with the bridge's identity."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt

from gateway.mqtt import payloads, topics
from gateway.mqtt.bridge import new_client_id
from gateway.mqtt.broker import ManagedMosquitto
from gateway.mqtt.payloads import CommandAckPayload, CommandPayload
from simulators.device_mqtt import DeviceMqtt
from tests.fixtures.mosquitto import LocalPki
from tests.simulators.conftest import FAST_SESSION, WAIT_S

SERIAL = "ZC1-MQTT-0001"


@contextlib.asynccontextmanager
async def cloud_watcher(pki: LocalPki, broker: ManagedMosquitto) -> AsyncIterator[aiomqtt.Client]:
    """Connect with the bridge's identity (it may read and write every zn/ topic)."""
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=new_client_id(),
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=pki.bridge_tls_context(),
        timeout=5,
    ) as client:
        yield client


async def next_json(client: aiomqtt.Client) -> tuple[str, dict[str, Any]]:
    """Return the next message's topic and JSON document."""
    async with asyncio.timeout(WAIT_S):
        message = await anext(aiter(client.messages))
    assert isinstance(message.payload, bytes)
    return message.topic.value, json.loads(message.payload)


async def test_session_keeps_a_retained_state_and_says_offline_when_it_closes(
    device_pki: LocalPki, mosquitto_broker: ManagedMosquitto
) -> None:
    creds = device_pki.mint_device(SERIAL)
    state = topics.state_topic(SERIAL)
    session = DeviceMqtt(
        SERIAL,
        mosquitto_broker.host,
        mosquitto_broker.port,
        creds.tls_context(),
        firmware="1.2.3",
        options=FAST_SESSION,
    )
    async with session:
        async with asyncio.timeout(WAIT_S):
            await session.wait_connected()
        async with cloud_watcher(device_pki, mosquitto_broker) as watcher:
            await watcher.subscribe(state, qos=1)
            assert await next_json(watcher) == (
                state,
                {"online": True, "firmware": "1.2.3", "network": "wifi"},
            )
    async with cloud_watcher(device_pki, mosquitto_broker) as watcher:
        await watcher.subscribe(state, qos=1)
        assert await next_json(watcher) == (state, {"online": False})


async def test_redelivered_command_runs_once_and_is_acknowledged_each_time(
    device_pki: LocalPki, mosquitto_broker: ManagedMosquitto
) -> None:
    creds = device_pki.mint_device(SERIAL)
    runs: list[str] = []

    async def handle(command: CommandPayload, child: str | None) -> CommandAckPayload:
        runs.append(command.name)
        return CommandAckPayload(id=command.id, ok=True)

    session = DeviceMqtt(
        SERIAL,
        mosquitto_broker.host,
        mosquitto_broker.port,
        creds.tls_context(),
        on_command=handle,
        options=FAST_SESSION,
    )
    ack_topic = topics.device_topic(SERIAL, topics.Inbound.CMD_ACK)
    command = payloads.encode(CommandPayload(id="cmd-1", name="reboot", args={}))
    async with session, cloud_watcher(device_pki, mosquitto_broker) as cloud:
        async with asyncio.timeout(WAIT_S):
            await session.wait_connected()
        await cloud.subscribe(ack_topic, qos=1)
        for _ in range(2):
            await cloud.publish(topics.device_topic(SERIAL, topics.Outbound.CMD), command, qos=1)
            assert await next_json(cloud) == (ack_topic, {"id": "cmd-1", "ok": True})
    assert runs == ["reboot"]


async def test_command_without_a_handler_is_refused_not_dropped(
    device_pki: LocalPki, mosquitto_broker: ManagedMosquitto
) -> None:
    creds = device_pki.mint_device(SERIAL)
    session = DeviceMqtt(
        SERIAL,
        mosquitto_broker.host,
        mosquitto_broker.port,
        creds.tls_context(),
        options=FAST_SESSION,
    )
    ack_topic = topics.device_topic(SERIAL, topics.Inbound.CMD_ACK)
    async with session, cloud_watcher(device_pki, mosquitto_broker) as cloud:
        async with asyncio.timeout(WAIT_S):
            await session.wait_connected()
        await cloud.subscribe(ack_topic, qos=1)
        await cloud.publish(
            topics.device_topic(SERIAL, topics.Outbound.CMD),
            payloads.encode(CommandPayload(id="cmd-2", name="reboot", args={})),
            qos=1,
        )
        assert await next_json(cloud) == (
            ack_topic,
            {"id": "cmd-2", "ok": False, "error": "unsupported"},
        )
