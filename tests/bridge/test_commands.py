"""The command outbox reaches devices when they are online; resets reported by devices unbind."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from gateway.mqtt import topics
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import ManagedMosquitto
from provisioning.domain.accounts import Principal
from provisioning.services import Services
from provisioning.storage.devices import Command, Ownership
from tests.bridge.conftest import (
    OwnDevice,
    device_client,
    eventually,
    next_message,
    publish_json,
    sample,
)


async def _command_state(services: Services, command_id: uuid.UUID) -> str | None:
    async with services.db.session() as session:
        command = await session.get(Command, command_id)
        return None if command is None else command.state


async def test_queued_reset_waits_for_the_device_to_come_online_then_is_acked(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    creds, account_id = await own_device("ZC1-CMD-0001")
    await services.devices.unbind(Principal(account_id, uuid.uuid4()), creds.serial)
    async with services.db.session() as session:
        (command_id,) = (await session.scalars(select(Command.id))).all()
    await bridge.dispatcher.drain_once()  # the device is offline: nothing is sent
    assert await _command_state(services, command_id) == "queued"

    async with device_client(creds, mosquitto_broker) as device:
        await device.subscribe(topics.device_topic(creds.serial, topics.Outbound.CMD), qos=1)
        await publish_json(device, topics.state_topic(creds.serial), {"online": True}, retain=True)
        message = await next_message(device)
        assert not message.retain
        assert 0 < getattr(message.properties, "MessageExpiryInterval", 0) <= 300
        assert isinstance(message.payload, bytes)
        document = json.loads(message.payload)
        assert document == {"id": str(command_id), "name": "reset", "args": {}}
        assert await _command_state(services, command_id) == "sent"
        await publish_json(
            device,
            topics.device_topic(creds.serial, topics.Inbound.CMD_ACK),
            {"id": str(command_id), "ok": True},
        )

        async def acked() -> bool:
            return await _command_state(services, command_id) == "acked"

        await eventually(acked)
    assert sample(services, "zanuo_commands_total", name="reset", outcome="acked") == 1


async def test_factory_reset_reported_by_the_device_unbinds_it(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    creds, _ = await own_device("ZC1-RST-0001")
    async with device_client(creds, mosquitto_broker) as device:
        await publish_json(device, topics.device_topic(creds.serial, topics.Inbound.RESET), {})

        async def unbound() -> bool:
            async with services.db.session() as session:
                return await session.get(Ownership, creds.serial) is None

        await eventually(unbound)
