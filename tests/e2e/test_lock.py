"""Must show 2: a code-less lock bound through a hub with a pairing token, its events relayed.

The hub is set up by the phone like a camera; the lock is paired by the hub's
real BLE agent over the virtual link (bleak → bumble) and bound by the bridge
from the lock's signed proof. The ``ble_pair`` command reaches the hub through
``POST /v1/devices/{hub}/ble-pairings`` (the bridge's send-now path: the
token never reaches the command outbox table).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.ble.agent import BLE_PAIR_COMMAND, AgentOptions
from gateway.mqtt.payloads import EventPayload
from provisioning.domain.commands import DeviceCommand
from provisioning.protocomm.bumble_backend import (
    VirtualBleLink,
)
from provisioning.services import Services
from simulators.app import BleLink, PhoneApp, WifiChoice
from simulators.device_mqtt import SessionOptions, new_event_id
from simulators.hub import Hub
from simulators.lock import Lock
from simulators.wifi_world import WifiWorld
from tests.bridge.conftest import eventually, sample
from tests.e2e.conftest import HOME_PASSWORD, HOME_SSID, Manufacture, PhoneFactory, Stack

WAIT_S = 30.0
FINGER = bytes(range(32))
FAST_SESSION = SessionOptions(backoff_initial_s=0.05, backoff_max_s=0.5)
FAST_AGENT = AgentOptions(
    scan_timeout_s=5.0, connect_timeout_s=5.0, bind_timeout_s=15.0, backoff_initial_s=0.05
)


async def ask_hub_to_pair(stack: Stack, hub: str, token: str) -> None:
    """Send the hub a ``ble_pair`` command now (QoS 1, not retained, expiring, never stored)."""
    command = DeviceCommand(str(uuid.uuid4()), hub, BLE_PAIR_COMMAND, {"token": token})
    await stack.bridge.send_now(command, expiry_s=60)


async def wait_activated(phone: PhoneApp, token_id: uuid.UUID) -> None:
    """Poll the pairing token until exactly one device is bound with it."""

    async def bound() -> bool:
        state = await phone.pairing_token_state(token_id)
        return [d["state"] for d in state["devices"]] == ["bound"]

    await eventually(bound)


@contextlib.asynccontextmanager
async def hub_and_lock(
    manufacture: Manufacture, world: WifiWorld, hub_serial: str, lock_serial: str
) -> AsyncIterator[tuple[Hub, Lock, VirtualBleLink]]:
    """Power on a hub and a lock that share one BLE link."""
    hub_folder: Path = await manufacture(hub_serial, "hub")
    lock_folder: Path = await manufacture(lock_serial, "lock")
    async with (
        VirtualBleLink() as link,
        Hub(
            hub_folder, world, ble_link=link, session_options=FAST_SESSION, agent_options=FAST_AGENT
        ) as hub,
        Lock(lock_folder, link, poll_s=0.05) as lock,
    ):
        yield hub, lock, link


async def set_up_hub(phone: PhoneApp, hub: Hub, link: VirtualBleLink, stack: Stack) -> None:
    """Set the hub up over BLE from the phone, like a camera, and wait for its agent."""
    central = await link.add_central("phone")
    await phone.set_up_camera(
        hub.flash.info.label_payload,
        BleLink.on_virtual_link(f"ZN-{hub.serial}", central),
        WifiChoice(HOME_SSID, [HOME_PASSWORD]),
        broker=stack.broker_address,
    )
    await hub.wait_online()
    await eventually(lambda: asyncio.sleep(0, hub.agent is not None))


async def test_lock_binds_through_the_hub_and_its_unlock_result_reaches_the_owner(
    stack: Stack, phone: PhoneApp, manufacture: Manufacture, wifi_world: WifiWorld
) -> None:
    async with (
        hub_and_lock(manufacture, wifi_world, "ZH1-E2E-0001", "ZL1-E2E-0001") as (hub, lock, link),
        asyncio.timeout(WAIT_S),
    ):
        await set_up_hub(phone, hub, link, stack)
        await lock.press_button()
        token = await phone.pairing_token()
        command_id = await phone.pair_through_hub(hub.serial, token)
        assert command_id
        await wait_activated(phone, token.token_id)
        device = await phone.wait_device(lock.serial, lambda d: d["online"])
        assert (device["relation"], device["parent_hub"]) == ("mine", hub.serial)
        assert [c.serial for c in hub.children] == [lock.serial]

        lock.enroll_fingerprint(FINGER)
        # Without biometric_features the unlock is reported, its check result is not kept.
        assert await lock.touch(FINGER)
        first = await phone.wait_message(lambda m: m["serial"] == lock.serial)
        assert (first["type"], first["result"], first["via_hub"]) == ("unlock", None, hub.serial)
        await phone.request(
            "POST", "/v1/me/consents", json={"purpose": "biometric_features", "granted": True}
        )
        assert await lock.touch(FINGER)
        message = await phone.wait_message(
            lambda m: m["serial"] == lock.serial and m["event_id"] != first["event_id"]
        )
        assert (message["type"], message["result"], message["via_hub"]) == (
            "unlock",
            "match",
            hub.serial,
        )


async def test_a_hub_that_is_not_the_parent_cannot_relay_for_the_lock(
    stack: Stack,
    phone_factory: PhoneFactory,
    manufacture: Manufacture,
    wifi_world: WifiWorld,
    services: Services,
) -> None:
    owner = await phone_factory("owner@example.com")
    stranger = await phone_factory("stranger@example.com")
    async with (
        hub_and_lock(manufacture, wifi_world, "ZH1-E2E-0002", "ZL1-E2E-0002") as (hub, lock, link),
        Hub(
            await manufacture("ZH1-E2E-0003", "hub"),
            wifi_world,
            ble_link=link,
            session_options=FAST_SESSION,
            agent_options=FAST_AGENT,
        ) as other_hub,
        asyncio.timeout(WAIT_S),
    ):
        await set_up_hub(owner, hub, link, stack)
        await set_up_hub(stranger, other_hub, link, stack)
        await lock.press_button()
        token = await owner.pairing_token()
        await ask_hub_to_pair(stack, hub.serial, token.token)
        await wait_activated(owner, token.token_id)

        dropped = sample(services, "zanuo_mqtt_dropped_total", reason="unknown_child")
        session = other_hub.mqtt
        assert session is not None
        forged = EventPayload(
            id=new_event_id(), type="unlock", ts=dt.datetime.now(dt.UTC), result="match"
        )
        await session.publish_event(forged, child=lock.serial)
        await eventually(
            lambda: asyncio.sleep(
                0, sample(services, "zanuo_mqtt_dropped_total", reason="unknown_child") > dropped
            )
        )
        assert forged.id not in {e["event_id"] for e in await owner.events(lock.serial)}
        assert (await owner.device(lock.serial))["parent_hub"] == hub.serial
