"""Events: stored exactly once through a broker restart; bad messages counted and dropped."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import signal

import aiomqtt
from sqlalchemy import select

from gateway.mqtt import topics
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import ManagedMosquitto
from provisioning.domain.consent import Purpose
from provisioning.security.keys import open_bytes
from provisioning.services import Services
from provisioning.storage.devices import Device, Event
from tests.bridge.conftest import (
    OwnDevice,
    device_client,
    eventually,
    publish_json,
    sample,
    stored_events,
)
from tests.fixtures.mosquitto import DeviceCredentials

TOTAL = 10_000
WINDOW = 200


def _event(number: int) -> bytes:
    return json.dumps(
        {"id": f"ev-{number:05d}", "type": "motion", "ts": "2026-11-02T09:00:00+00:00"}
    ).encode()


async def _publish_through_outages(
    creds: DeviceCredentials, broker: ManagedMosquitto, halfway: asyncio.Event
) -> int:
    """Publish TOTAL events in windows; after a lost connection republish the open window."""
    topic = topics.device_topic(creds.serial, topics.Inbound.EVENT)
    sent, attempts = 0, 0
    while sent < TOTAL:
        attempts += 1
        try:
            async with device_client(creds, broker) as client:
                client.pending_calls_threshold = WINDOW + 10
                while sent < TOTAL:
                    window = range(sent, min(sent + WINDOW, TOTAL))
                    await asyncio.gather(
                        *(client.publish(topic, _event(n), qos=1, timeout=10) for n in window)
                    )
                    sent = window.stop
                    if sent >= TOTAL // 2:
                        halfway.set()
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)
    return attempts


async def test_ten_thousand_events_survive_a_broker_restart_exactly_once(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    creds, _ = await own_device("ZC1-LOAD-0001")
    halfway = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        publisher = group.create_task(_publish_through_outages(creds, mosquitto_broker, halfway))
        await halfway.wait()
        restarts = mosquitto_broker.restarts
        pid = mosquitto_broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # Mosquitto saves its persistence file and exits

        async def restarted() -> bool:
            return mosquitto_broker.restarts > restarts and mosquitto_broker.running

        await eventually(restarted)
    assert publisher.result() >= 2  # the device really had to reconnect

    async def all_stored() -> bool:
        return (await stored_events(services))[1] == TOTAL

    await eventually(all_stored, within=120)
    assert await stored_events(services) == (TOTAL, TOTAL)
    assert bridge.reconnects >= 1
    assert sample(services, "zanuo_bridge_reconnects_total") >= 1
    assert sample(services, "zanuo_mqtt_messages_in_total", kind="event") >= TOTAL


async def test_bad_messages_are_counted_by_reason_and_the_bridge_keeps_running(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    creds, _ = await own_device("ZC1-BADM-0001")
    event_topic = topics.device_topic(creds.serial, topics.Inbound.EVENT)
    async with device_client(creds, mosquitto_broker) as client:
        await client.publish(event_topic, b"{not json", qos=1)
        await client.publish(event_topic, b"\xff\xfe", qos=1)
        await client.publish(event_topic, b"x" * 200_000, qos=1)
        await publish_json(client, event_topic, {"id": "e1", "type": "motion"})  # no ts
        await publish_json(
            client,
            event_topic,
            {"id": "e1", "type": "motion", "ts": "2026-11-02T09:00:00Z", "gps": [1, 2]},
        )
        await publish_json(client, event_topic, ["a", "list"])
        await publish_json(
            client,
            f"zn/v1/{creds.serial}/sub/not-a-serial/event",
            {"id": "e2", "type": "motion", "ts": "2026-11-02T09:00:00Z"},
        )
        await publish_json(
            client,
            topics.device_topic("ZC1-STRANGER-01", topics.Inbound.EVENT, hub=creds.serial),
            {"id": "e3", "type": "motion", "ts": "2026-11-02T09:00:00Z"},
        )
        # After all that, a good event still goes through.
        await publish_json(
            client, event_topic, {"id": "good-1", "type": "doorbell", "ts": "2026-11-02T09:00:00Z"}
        )

        async def stored() -> bool:
            return (await stored_events(services))[0] == 1

        await eventually(stored)

    def dropped(reason: str) -> float:
        return sample(services, "zanuo_mqtt_dropped_total", reason=reason)

    async def all_counted() -> bool:
        return dropped("unknown_child") == 1

    await eventually(all_counted)
    assert dropped("malformed") == 2
    assert dropped("oversized") == 1
    assert dropped("schema") == 3
    assert dropped("topic") == 1
    assert bridge.connected
    assert bridge.reconnects == 0


async def test_screenshot_is_stored_encrypted_until_the_next_day_only_with_consent(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    with_consent, consenting = await own_device("ZC1-SHOT-0001")
    without_consent, _ = await own_device("ZC1-SHOT-0002")
    await services.consents.change(consenting, Purpose.EVENT_SCREENSHOTS, True, "settings")
    picture = os.urandom(2048)
    for creds in (with_consent, without_consent):
        async with device_client(creds, mosquitto_broker) as client:
            await publish_json(
                client,
                topics.device_topic(creds.serial, topics.Inbound.EVENT),
                {
                    "id": "shot-1",
                    "type": "motion",
                    "ts": "2026-11-02T08:59:00Z",
                    "screenshot": base64.b64encode(picture).decode(),
                },
            )

    async def both_stored() -> bool:
        return (await stored_events(services))[0] == 2

    await eventually(both_stored)
    async with services.db.session() as session:
        kept = (
            await session.scalars(select(Event).where(Event.serial == with_consent.serial))
        ).one()
        dropped = (
            await session.scalars(select(Event).where(Event.serial == without_consent.serial))
        ).one()
        dek = await services.vault.data_key(session, consenting)
    assert kept.screenshot_enc is not None
    assert picture not in kept.screenshot_enc
    assert open_bytes(dek, kept.screenshot_enc, f"event-screenshot:{kept.serial}:shot-1") == picture
    assert kept.screenshot_delete_at == services.clock.now() + dt.timedelta(days=1)
    assert kept.in_feed
    assert kept.occurred_at == dt.datetime(2026, 11, 2, 8, 59, tzinfo=dt.UTC)
    assert dropped.screenshot_enc is None
    assert dropped.screenshot_delete_at is None


async def test_hub_relays_events_only_for_its_own_children(
    services: Services,
    bridge: MqttBridge,
    mosquitto_broker: ManagedMosquitto,
    own_device: OwnDevice,
) -> None:
    hub, _ = await own_device("ZC1-HUB-0001")
    child, child_owner = await own_device("ZC1-LOCK-0001", "lock", with_code=False)
    stranger, _ = await own_device("ZC1-LOCK-0002", "lock", with_code=False)
    # The check result is kept only with biometric_features (tests/e2e/test_lock.py).
    await services.consents.change(child_owner, Purpose.BIOMETRIC_FEATURES, True, "app_settings")
    async with services.db.session() as session:
        device = await session.get(Device, child.serial)
        assert device is not None
        device.parent_serial = hub.serial
        await session.commit()
    async with device_client(hub, mosquitto_broker) as client:
        for serial in (stranger.serial, child.serial):
            await publish_json(
                client,
                topics.device_topic(serial, topics.Inbound.EVENT, hub=hub.serial),
                {
                    "id": "unlock-1",
                    "type": "unlock",
                    "ts": "2026-11-02T09:00:00Z",
                    "result": "face_ok",
                },
            )

        async def stored() -> bool:
            return (await stored_events(services))[0] == 1

        await eventually(stored)
    async with services.db.session() as session:
        event = (await session.scalars(select(Event))).one()
    assert (event.serial, event.via_serial, event.result) == (child.serial, hub.serial, "face_ok")
    assert sample(services, "zanuo_mqtt_dropped_total", reason="unknown_child") == 1
