"""The lock's pairing window, and the hub's BLE agent pairing and relaying a lock for real."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from bleak import BleakScanner
from bumble import core
from sqlalchemy import select

from gateway.ble.agent import BLE_PAIR_COMMAND, AgentOptions, BleHubAgent, PairingFailed
from gateway.mqtt import payloads
from provisioning.clock import FrozenClock
from provisioning.protocomm import BindRefused, BindRequest
from provisioning.protocomm.ble import ESPRESSIF_SERVICE_UUID
from provisioning.protocomm.bumble_backend import VirtualBleLink, bleak_scanner_backend
from provisioning.services import Services
from provisioning.storage.devices import Device, Event, Ownership
from simulators.flash import ChildLink, DeviceFlash
from simulators.hub import Hub
from simulators.lock import PAIRING_WINDOW, Lock
from tests.simulators.conftest import (
    FAST_AGENT,
    FAST_SESSION,
    WAIT_S,
    Cloud,
    Manufacture,
    broker_of,
    eventually,
    softap_client,
)

HUB = "ZH1-HUB-0001"
LOCK = "ZL1-LOCK-0001"


async def test_lock_pairing_window_closes_after_the_timeout(
    manufacture: Manufacture, ble_link: VirtualBleLink, clock: FrozenClock
) -> None:
    folder = await manufacture(LOCK, "lock")
    scanner_radio = await ble_link.add_central("scanner")
    async with Lock(folder, ble_link, clock=clock, poll_s=0.02) as lock:
        assert lock.advertising is None
        await lock.press_button()
        assert lock.pairing_open
        assert lock.advertising == "pairing"
        found = await BleakScanner.find_device_by_filter(
            lambda _device, adv: adv.local_name == f"ZN-{LOCK}",
            timeout=WAIT_S,
            service_uuids=[ESPRESSIF_SERVICE_UUID],
            backend=bleak_scanner_backend(scanner_radio),
        )
        assert found is not None
        assert found.address == lock.ble_address
        clock.advance(PAIRING_WINDOW - dt.timedelta(seconds=1))
        assert lock.pairing_open
        clock.advance(dt.timedelta(seconds=2))
        await eventually(lambda: lock.advertising is None)
        assert not lock.pairing_open
        with pytest.raises(BindRefused):
            await lock.accept_bind(BindRequest(b"zp_late-pairing-token", "hub.local", 8883))
        assert not lock.paired


async def _owner_and_parent(services: Services, serial: str) -> tuple[uuid.UUID | None, str | None]:
    async with services.db.session() as session:
        ownership = await session.get(Ownership, serial)
        device = await session.get(Device, serial)
    return (
        None if ownership is None else ownership.account_id,
        None if device is None else device.parent_serial,
    )


async def _event_results(services: Services, serial: str) -> list[tuple[str | None, str | None]]:
    async with services.db.session() as session:
        rows = await session.execute(
            select(Event.result, Event.via_serial)
            .where(Event.serial == serial)
            .order_by(Event.result)
        )
        return [(result, via) for result, via in rows.all()]


@asynccontextmanager
async def hub_and_lock(
    cloud: Cloud, ble_link: VirtualBleLink, *, agent_options: AgentOptions = FAST_AGENT
) -> AsyncIterator[tuple[Hub, Lock]]:
    """Run a hub bound to the owner and a powered-on, unpaired lock next to it."""
    hub = Hub(
        await cloud.manufacture(HUB, "hub"),
        cloud.world,
        ble_link=ble_link,
        clock=cloud.clock,
        broker=broker_of(cloud.broker),
        session_options=FAST_SESSION,
        agent_options=agent_options,
    )
    lock = Lock(await cloud.manufacture(LOCK, "lock"), ble_link, clock=cloud.clock, poll_s=0.05)
    async with hub, lock:
        async with softap_client(hub) as client:
            await cloud.bind(hub, client)
        async with asyncio.timeout(WAIT_S):
            await hub.wait_online()
        await eventually(lambda: hub.agent is not None)
        yield hub, lock


async def pair_and_link(cloud: Cloud, hub: Hub, lock: Lock) -> BleHubAgent:
    """Open the lock's pairing mode, pair it through the hub and wait for the relay link."""
    await lock.press_button()
    pairing = await cloud.services.binding.create_pairing_token(cloud.owner.principal)
    child = await hub.pair(pairing.token, lock.ble_address)
    assert child.serial == LOCK
    agent = hub.agent
    assert agent is not None
    async with asyncio.timeout(WAIT_S):
        await agent.wait_link(LOCK)
    return agent


async def test_hub_pairs_a_lock_on_command_and_relays_its_unlock_results(
    cloud: Cloud, ble_link: VirtualBleLink
) -> None:
    async with hub_and_lock(cloud, ble_link) as (hub, lock):
        await lock.press_button()
        pairing = await cloud.services.binding.create_pairing_token(cloud.owner.principal)
        command = payloads.CommandPayload(
            id=str(uuid.uuid4()),
            name=BLE_PAIR_COMMAND,
            args={"token": pairing.token, "ble_address": lock.ble_address},
        )
        await cloud.bridge.publish_command(hub.serial, None, payloads.encode(command), expiry_s=60)

        async def paired() -> bool:
            return await _owner_and_parent(cloud.services, LOCK) == (
                cloud.owner.principal.account_id,
                HUB,
            )

        await eventually(paired)  # the bridge verified the lock's signed proof
        assert lock.paired
        assert not lock.pairing_open
        # The hub records the child once the bind result reaches it.
        await eventually(lambda: hub.children == (ChildLink(LOCK, lock.ble_address),))
        assert DeviceFlash.load(hub.flash.folder).state.children == [
            ChildLink(LOCK, lock.ble_address)
        ]
        agent = hub.agent
        assert agent is not None
        async with asyncio.timeout(WAIT_S):
            await agent.wait_link(LOCK)

        template = os.urandom(64)
        lock.enroll_fingerprint(template)
        assert await lock.touch(template)
        assert not await lock.touch(bytes(b ^ 0xFF for b in template))

        async def two_events() -> bool:
            return len(await _event_results(cloud.services, LOCK)) == 2

        await eventually(two_events)
        assert await _event_results(cloud.services, LOCK) == [("match", HUB), ("no_match", HUB)]


async def test_hub_relinks_after_the_ble_link_drops(cloud: Cloud, ble_link: VirtualBleLink) -> None:
    async with hub_and_lock(cloud, ble_link) as (hub, lock):
        agent = await pair_and_link(cloud, hub, lock)
        device = lock.ble_device
        assert device is not None
        for connection in list(device.connections.values()):
            with contextlib.suppress(core.BaseBumbleError):  # already gone
                await connection.disconnect()
        await eventually(lambda: not agent.link_connected(LOCK))
        async with asyncio.timeout(WAIT_S):
            await agent.wait_link(LOCK)
        lock.enroll_fingerprint(b"\x5a" * 32)
        assert await lock.touch(b"\x5a" * 32)

        async def relayed() -> bool:
            return await _event_results(cloud.services, LOCK) == [("match", HUB)]

        await eventually(relayed)


async def test_lock_factory_reset_is_relayed_and_unbinds_it(
    cloud: Cloud, ble_link: VirtualBleLink
) -> None:
    async with hub_and_lock(cloud, ble_link) as (hub, lock):
        await pair_and_link(cloud, hub, lock)
        lock.enroll_fingerprint(b"\x01" * 32)
        await lock.factory_reset()
        assert lock.flash.is_factory_fresh
        assert lock.advertising is None

        async def released() -> bool:
            return await _owner_and_parent(cloud.services, LOCK) == (None, None)

        await eventually(released)
        await eventually(lambda: hub.children == ())


async def test_reset_command_for_the_lock_goes_through_the_hub_and_wipes_it(
    cloud: Cloud, ble_link: VirtualBleLink
) -> None:
    async with hub_and_lock(cloud, ble_link) as (hub, lock):
        await pair_and_link(cloud, hub, lock)
        lock.enroll_fingerprint(b"\x02" * 32)
        reset = payloads.CommandPayload(id=str(uuid.uuid4()), name="reset", args={})
        await cloud.bridge.publish_command(LOCK, HUB, payloads.encode(reset), expiry_s=60)
        await eventually(lambda: lock.flash.is_factory_fresh)
        assert not lock.paired
        await eventually(lambda: hub.children == ())
        assert DeviceFlash.load(hub.flash.folder).state.children == []


async def test_pairing_fails_when_no_lock_is_in_pairing_mode(
    cloud: Cloud, ble_link: VirtualBleLink
) -> None:
    quick_scan = AgentOptions(scan_timeout_s=0.5, connect_timeout_s=5.0, bind_timeout_s=5.0)
    async with hub_and_lock(cloud, ble_link, agent_options=quick_scan) as (hub, lock):
        pairing = await cloud.services.binding.create_pairing_token(cloud.owner.principal)
        with pytest.raises(PairingFailed, match="lock_not_found"):
            await hub.pair(pairing.token)
        assert not lock.paired
        assert hub.children == ()
