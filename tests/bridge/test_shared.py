"""Two bridge instances on one shared subscription."""

from __future__ import annotations

import asyncio
import json

from gateway.mqtt import topics
from gateway.mqtt.bridge import MqttBridge, new_client_id
from gateway.mqtt.broker import ManagedMosquitto
from provisioning.services import Services
from tests.bridge.conftest import (
    OwnDevice,
    bridge_options,
    cut_connection,
    device_client,
    eventually,
    running_bridge,
    stored_events,
)
from tests.fixtures.mosquitto import DeviceCredentials, LocalPki

DEVICES = 3
PER_DEVICE = 600
GROUP = "zanuo-bridge"


async def _publish(
    creds: DeviceCredentials, broker: ManagedMosquitto, start: int, stop: int
) -> None:
    topic = topics.device_topic(creds.serial, topics.Inbound.EVENT)
    async with device_client(creds, broker) as client:
        for number in range(start, stop):
            document = {"id": f"e{number}", "type": "motion", "ts": "2026-11-02T09:00:00Z"}
            await client.publish(topic, json.dumps(document).encode(), qos=1)


async def _run_until(bridge: MqttBridge, stop: asyncio.Event) -> None:
    async with bridge:
        await stop.wait()


async def test_two_instances_split_the_load_and_the_survivor_takes_over_a_killed_ones_backlog(
    services: Services,
    device_pki: LocalPki,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    fleet = [(await own_device(f"ZC1-SHARE-{n:04d}"))[0] for n in range(DEVICES)]
    killed_id = new_client_id()
    victim = MqttBridge(
        services,
        bridge_options(
            device_pki, mosquitto_broker, instance="a", client_id=killed_id, group=GROUP
        ),
    )
    never = asyncio.Event()
    async with (
        running_bridge(
            services, device_pki, mosquitto_broker, instance="b", group=GROUP
        ) as survivor,
        asyncio.TaskGroup() as group,
    ):
        victim_task = group.create_task(_run_until(victim, never))
        async with asyncio.timeout(30):
            await victim.wait_connected()
        half = PER_DEVICE // 2
        await asyncio.gather(*(_publish(creds, mosquitto_broker, 0, half) for creds in fleet))

        async def first_half_stored() -> bool:
            return (await stored_events(services))[1] == DEVICES * half

        await eventually(first_half_stored)
        # Both instances took part.
        assert victim.events_stored > 0
        assert survivor.events_stored > 0

        # Kill instance a: its connection drops without DISCONNECT, its work stops.
        assert victim._client is not None
        cut_connection(victim._client)
        victim_task.cancel()
        await asyncio.gather(
            *(_publish(creds, mosquitto_broker, half, PER_DEVICE) for creds in fleet)
        )

        # Instance b sees a's LWT, resumes a's persistent session (whose share
        # Mosquitto keeps routing to it), drains it and lets it expire.
        async def all_stored() -> bool:
            return (await stored_events(services))[1] == DEVICES * PER_DEVICE

        await eventually(all_stored, within=60)

        async def adopted() -> bool:
            return survivor.adoptions == 1

        await eventually(adopted)
        # Those were messages routed to a's session after it died.
        assert survivor.adopted_messages > 0
    assert await stored_events(services) == (DEVICES * PER_DEVICE, DEVICES * PER_DEVICE)
