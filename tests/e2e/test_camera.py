"""Must show 1 and 3: a camera set up by the phone app, over SoftAP and BLE, then its life after.

Everything is real but the radio: the API over loopback HTTP, Mosquitto with
the project's mTLS config, the MQTT bridge, the simulated camera with its
flash folder, protocomm over HTTP or over GATT (bleak → bumble).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from provisioning.errors import DeviceNotFound, NotOwner
from provisioning.protocomm.bumble_backend import (
    VirtualBleLink,
)
from provisioning.security.ca import DEVICE_CERT_FILE, read_certificate
from simulators.app import BleLink, LocalLink, PhoneApp, SoftApLink, WifiChoice
from simulators.camera import Camera
from simulators.wifi_world import WifiWorld
from tests.bridge.conftest import eventually
from tests.e2e.conftest import (
    HOME_PASSWORD,
    HOME_SSID,
    NEW_PASSWORD,
    NEW_SSID,
    WRONG_PASSWORD,
    Manufacture,
    PhoneFactory,
    Stack,
)

WAIT_S = 30.0


@contextlib.asynccontextmanager
async def running_camera(
    folder: Path, world: WifiWorld, *, ble: bool = False
) -> AsyncIterator[tuple[Camera, LocalLink]]:
    """Boot a camera from its flash and return it with the phone's link to it."""
    async with contextlib.AsyncExitStack() as stack:
        link: VirtualBleLink | None = None
        if ble:
            link = await stack.enter_async_context(VirtualBleLink())
        camera = await stack.enter_async_context(Camera(folder, world, ble_link=link))
        if link is None:
            yield camera, SoftApLink(camera.http_url)
        else:
            central = await link.add_central("phone")
            yield (
                camera,
                BleLink.on_virtual_link(f"ZN-{camera.serial}", central),
            )


async def set_up(
    phone: PhoneApp, camera: Camera, link: LocalLink, stack: Stack, *passwords: str
) -> None:
    """Run the app's setup flow and wait until the camera is online and knows it is bound."""
    assert camera.label_code is not None
    await phone.set_up_camera(
        camera.flash.info.label_payload,
        link,
        WifiChoice(HOME_SSID, passwords or (HOME_PASSWORD,)),
        broker=stack.broker_address,
    )
    await camera.wait_online()
    # The app can see "bound" in the cloud a moment before bind/result reaches the camera.
    await camera.wait_bound()


@pytest.mark.parametrize("over", ["softap", "ble"])
async def test_camera_binds_after_a_wrong_wifi_password_and_comes_online(
    over: str, stack: Stack, phone: PhoneApp, manufacture: Manufacture, wifi_world: WifiWorld
) -> None:
    folder = await manufacture(f"ZC1-E2E-{over.upper()}")
    async with running_camera(folder, wifi_world, ble=over == "ble") as (camera, link):
        async with asyncio.timeout(WAIT_S):
            bound = await phone.set_up_camera(
                camera.flash.info.label_payload,
                link,
                WifiChoice(HOME_SSID, [WRONG_PASSWORD, HOME_PASSWORD]),
                broker=stack.broker_address,
            )
            assert bound.wifi_attempts == 2
            await camera.wait_bound()
            device = await phone.wait_device(camera.serial, lambda d: d["online"])
        assert camera.online
        assert camera.wifi_connection is not None
        assert camera.wifi_connection.ssid == HOME_SSID.encode()
        assert (device["relation"], device["network_type"]) == ("mine", "wifi")
        assert (await phone.binding(bound.binding_id)).state == "bound"


async def test_unbinding_in_the_app_resets_the_camera(
    stack: Stack, phone: PhoneApp, manufacture: Manufacture, wifi_world: WifiWorld
) -> None:
    folder = await manufacture("ZC1-E2E-UNBIND")
    async with running_camera(folder, wifi_world) as (camera, link), asyncio.timeout(WAIT_S):
        await set_up(phone, camera, link, stack)
        await phone.unbind(camera.serial)
        await camera.wait_idle()
        assert camera.flash.is_factory_fresh
        assert camera.wifi_connection is None
        assert (await phone.bind_state(camera.serial)).relation == "unbound"


async def test_factory_reset_on_the_camera_unbinds_it_in_the_cloud(
    stack: Stack, phone: PhoneApp, manufacture: Manufacture, wifi_world: WifiWorld
) -> None:
    folder = await manufacture("ZC1-E2E-RESET")
    async with running_camera(folder, wifi_world) as (camera, link), asyncio.timeout(WAIT_S):
        await set_up(phone, camera, link, stack)
        await camera.factory_reset()

        async def released() -> bool:
            return (await phone.bind_state(camera.serial)).relation == "unbound"

        await eventually(released)
        with pytest.raises(DeviceNotFound):
            await phone.device(camera.serial)
        # Factory-fresh again: the same phone can set it up anew.
        await set_up(phone, camera, link, stack)
        assert camera.bound


async def test_shared_user_sees_events_but_cannot_unbind(
    stack: Stack, phone_factory: PhoneFactory, manufacture: Manufacture, wifi_world: WifiWorld
) -> None:
    owner = await phone_factory("owner@example.com")
    guest = await phone_factory("guest@example.com")
    folder = await manufacture("ZC1-E2E-SHARE")
    async with running_camera(folder, wifi_world) as (camera, link), asyncio.timeout(WAIT_S):
        await set_up(owner, camera, link, stack)
        await owner.share(camera.serial, "guest@example.com", "view")
        (invitation,) = await guest.invitations()
        await guest.accept(invitation["share_id"])
        await owner.set_consent("event_screenshots", granted=True)
        event_id = await camera.motion()

        async def guest_sees_it() -> bool:
            return any(e["event_id"] == event_id for e in await guest.events(camera.serial))

        await eventually(guest_sees_it)
        message = await owner.wait_message(lambda m: m["event_id"] == event_id)
        assert (message["type"], message["has_screenshot"]) == ("motion", True)
        with pytest.raises(NotOwner):
            await guest.unbind(camera.serial)
        assert camera.bound
        assert (await owner.device(camera.serial))["relation"] == "mine"


async def test_remote_wifi_change_moves_the_camera_to_the_new_network(
    stack: Stack, phone: PhoneApp, manufacture: Manufacture, wifi_world: WifiWorld
) -> None:
    folder = await manufacture("ZC1-E2E-WIFI")
    certificate = read_certificate(folder / DEVICE_CERT_FILE)
    async with running_camera(folder, wifi_world) as (camera, link), asyncio.timeout(WAIT_S):
        await set_up(phone, camera, link, stack)
        await phone.wait_device(camera.serial, lambda d: d["online"])
        await phone.change_wifi(camera.serial, NEW_SSID, NEW_PASSWORD, certificate=certificate)

        async def moved() -> bool:
            connection = camera.wifi_connection
            return connection is not None and connection.ssid == NEW_SSID.encode()

        await eventually(moved)
        assert camera.flash.state.wifi is not None
        assert camera.flash.state.wifi.ssid == NEW_SSID.encode()
        # Still online and bound on the new network: events keep flowing.
        event_id = await camera.doorbell()
        await phone.wait_message(lambda m: m["event_id"] == event_id)
