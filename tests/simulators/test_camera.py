"""The simulated camera: SoftAP and BLE provisioning, MQTT binding, reset, Wi-Fi change."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from pathlib import Path

import pytest
from bumble.device import Device as BumbleDevice
from sqlalchemy import select

from provisioning.domain.commands import WifiChanges, WifiCredentials
from provisioning.domain.registry import FlashSpec, manufacture_devices
from provisioning.protocomm import BindFailed, StationState, WifiConnectFailed
from provisioning.protocomm.bumble_backend import VirtualBleLink
from provisioning.services import Services
from provisioning.storage.devices import Binding, Device, Event, Ownership
from simulators.camera import Camera, tiny_jpeg
from simulators.flash import DeviceFlash
from simulators.wifi_world import WifiWorld
from tests.fixtures.mosquitto import LocalPki
from tests.simulators.conftest import (
    HOME_PASSWORD,
    HOME_SSID,
    OFFICE_PASSWORD,
    OFFICE_SSID,
    PUBLIC_BROKER,
    WAIT_S,
    Cloud,
    Manufacture,
    ble_client,
    eventually,
    softap_client,
)


async def _online(services: Services, serial: str) -> bool:
    async with services.db.session() as session:
        device = await session.get(Device, serial)
        return device is not None and device.online


async def _owned(services: Services, serial: str) -> bool:
    async with services.db.session() as session:
        return await session.get(Ownership, serial) is not None


@pytest.mark.parametrize(("link", "security"), [("softap", "sec2"), ("ble", "sec1")])
async def test_camera_binds_after_a_wrong_wifi_password_then_the_right_one(
    link: str,
    security: str,
    cloud: Cloud,
    ble_link: VirtualBleLink,
    phone_radio: BumbleDevice,
) -> None:
    folder = await cloud.manufacture("ZC1-CAM-0001")
    camera = cloud.camera(
        folder, security="sec2" if security == "sec2" else "sec1", ble_link=ble_link
    )
    async with camera:
        opener = softap_client(camera) if link == "softap" else ble_client(camera, phone_radio)
        async with opener as client:
            assert client.version is not None
            assert client.version.device_type == "camera"
            assert client.version.sec_ver == (2 if security == "sec2" else 1)
            issued = await cloud.services.binding.bind_with_code(
                cloud.owner.principal, camera.serial, camera.label_code or "", "127.0.0.1"
            )
            answer = await client.bind(issued.bind_token.encode(), *PUBLIC_BROKER)
            assert (answer.serial, answer.signature) == (camera.serial, None)
            async with asyncio.timeout(WAIT_S):
                with pytest.raises(WifiConnectFailed, match="AuthError"):
                    await client.provision_wifi(HOME_SSID, b"not the passphrase")
                assert not camera.online  # no network, no broker
                connection = await client.provision_wifi(HOME_SSID, HOME_PASSWORD)
                await camera.wait_bound()
                await camera.wait_online()
        assert connection.ssid == HOME_SSID
        await eventually(lambda: _online(cloud.services, camera.serial))
        async with cloud.services.db.session() as session:
            binding = await session.get(Binding, issued.binding_id)
            assert binding is not None
            assert binding.state == "bound"
        stored = DeviceFlash.load(folder).state
        assert stored.bound
        assert stored.bind_token is None
        assert stored.wifi is not None
        assert stored.wifi.passphrase == HOME_PASSWORD


async def test_bound_camera_refuses_another_bind_token(
    cloud: Cloud,
) -> None:
    async with (
        cloud.bound_camera("ZC1-CAM-0002") as camera,
        softap_client(camera) as client,
    ):
        with pytest.raises(BindFailed, match="BindRejected"):
            await client.bind(b"zb_someone-elses-token", *PUBLIC_BROKER)


async def test_camera_motion_event_with_screenshot_reaches_the_store(
    cloud: Cloud,
) -> None:
    async with cloud.bound_camera("ZC1-CAM-0003") as camera:
        event_id = await camera.motion()
        doorbell_id = await camera.doorbell()

        async def stored() -> list[tuple[str, str]]:
            async with cloud.services.db.session() as session:
                rows = await session.execute(
                    select(Event.event_id, Event.event_type).where(Event.serial == camera.serial)
                )
                return sorted((str(a), str(b)) for a, b in rows.all())

        async def both_stored() -> bool:
            return len(await stored()) == 2

        await eventually(both_stored)
        assert await stored() == sorted([(event_id, "motion"), (doorbell_id, "doorbell")])


def test_flash_from_the_factory_import_loads_with_its_label_code(device_pki: LocalPki) -> None:
    now = dt.datetime.now(dt.UTC)
    spec = FlashSpec(
        serial="ZC1-FAB-0001",
        model="CAM-100",
        device_type="camera",
        capabilities=("wifi", "ble"),
        label_code=None,
        generate_code=True,
        ble_mac=None,
        firmware_version="2.0.1",
    )
    manufacture_devices(device_pki.ca, now, device_pki.directory / "fab", [spec])
    flash = DeviceFlash.load(device_pki.directory / "fab" / "ZC1-FAB-0001")
    assert flash.info.label_code is not None
    assert flash.info.label_payload == f"ZN1:ZC1-FAB-0001:{flash.info.label_code}:CAM-100"
    assert flash.info.firmware_version == "2.0.1"
    assert flash.is_factory_fresh
    assert flash.info.label_code not in repr(flash.info)


def test_screenshot_is_a_baseline_jpeg() -> None:
    image = tiny_jpeg(96)
    assert image.startswith(b"\xff\xd8\xff\xe0")
    assert image.endswith(b"\xff\xd9")
    assert b"\xff\xc0\x00\x0b\x08\x00\x08\x00\x08\x01" in image  # SOF0, 8x8, one component
    assert tiny_jpeg(0) != tiny_jpeg(255)


async def test_unbind_sends_a_reset_that_wipes_the_flash(
    cloud: Cloud,
) -> None:
    async with cloud.bound_camera("ZC1-CAM-0004") as camera:
        await cloud.services.devices.unbind(cloud.owner.principal, camera.serial)
        async with asyncio.timeout(WAIT_S):
            await eventually(lambda: camera.flash.is_factory_fresh)
            await camera.wait_idle()
        assert not camera.bound
        assert camera.wifi_connection is None
        fresh = DeviceFlash.load(camera.flash.folder)
        assert fresh.is_factory_fresh
        assert fresh.info == camera.flash.info
        assert sorted(p.name for p in Path(camera.flash.folder).iterdir()) == [
            "ca.crt.pem",
            "device.crt.pem",
            "device.json",
            "device.key.pem",
        ]
        await eventually(lambda: _offline(cloud.services, camera.serial))


def _commands(services: Services, name: str, outcome: str) -> float:
    value = services.metrics.registry.get_sample_value(
        "zanuo_commands_total", {"name": name, "outcome": outcome}
    )
    return value or 0.0


async def _offline(services: Services, serial: str) -> bool:
    return not await _online(services, serial)


async def test_factory_reset_button_unbinds_the_camera_in_the_cloud(
    cloud: Cloud,
) -> None:
    async with cloud.bound_camera("ZC1-CAM-0005") as camera:
        assert await _owned(cloud.services, camera.serial)
        await camera.factory_reset()
        assert camera.flash.is_factory_fresh
        assert not camera.online

        async def released() -> bool:
            return not await _owned(cloud.services, camera.serial)

        await eventually(released)
        # Back in provisioning mode: the label code opens a session again, no network.
        async with softap_client(camera) as client:
            assert (await client.get_wifi_status()).state is StationState.DISCONNECTED


async def test_remote_wifi_change_moves_the_camera_and_a_wrong_password_keeps_it(
    cloud: Cloud,
) -> None:
    changes = WifiChanges(cloud.services.devices, cloud.bridge, cloud.services.metrics)
    async with cloud.bound_camera("ZC1-CAM-0006") as camera:
        await eventually(lambda: _online(cloud.services, camera.serial))
        await changes.send_plain(
            cloud.owner.principal,
            camera.serial,
            WifiCredentials(ssid=OFFICE_SSID.decode(), passphrase="wrong office passphrase"),
        )
        await eventually(lambda: _commands(cloud.services, "wifi", "failed") == 1)
        home = camera.wifi_connection
        assert home is not None
        assert home.ssid == HOME_SSID
        await changes.send_plain(
            cloud.owner.principal,
            camera.serial,
            WifiCredentials(ssid=OFFICE_SSID.decode(), passphrase=OFFICE_PASSWORD.decode()),
        )

        def on_office() -> bool:
            connection = camera.wifi_connection
            return connection is not None and connection.ssid == OFFICE_SSID

        await eventually(on_office)
        await eventually(lambda: _commands(cloud.services, "wifi", "acked") == 1)
        saved = DeviceFlash.load(camera.flash.folder).state.wifi
        assert saved is not None
        assert saved.ssid == OFFICE_SSID
        assert camera.online


async def test_camera_reconnects_after_the_broker_restarts(
    cloud: Cloud,
) -> None:
    async with cloud.bound_camera("ZC1-CAM-0007") as camera:
        session = camera.mqtt
        assert session is not None
        assert session.connections == 1
        pid = cloud.broker.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await eventually(lambda: cloud.broker.pid not in (None, pid))
        async with asyncio.timeout(WAIT_S):
            await cloud.broker.wait_ready()
        await eventually(lambda: session.connections >= 2 and session.connected)
        # Without broker persistence an event is only kept for a subscriber that is back.
        await eventually(lambda: cloud.bridge.reconnects >= 1)
        async with asyncio.timeout(WAIT_S):
            await cloud.bridge.wait_connected()
        event_id = await camera.motion()

        async def stored() -> bool:
            async with cloud.services.db.session() as db:
                found = await db.scalar(select(Event.id).where(Event.event_id == event_id))
                return found is not None

        await eventually(stored)


async def test_camera_reboots_into_its_network_and_session_from_flash(
    cloud: Cloud,
) -> None:
    async with cloud.bound_camera("ZC1-CAM-0008") as camera:
        folder = camera.flash.folder
    await eventually(lambda: _offline(cloud.services, "ZC1-CAM-0008"))
    async with cloud.camera(folder) as rebooted:
        async with asyncio.timeout(WAIT_S):
            await rebooted.wait_online()
        assert rebooted.bound
        assert rebooted.wifi_connection is not None
        await eventually(lambda: _online(cloud.services, rebooted.serial))


async def test_camera_scan_lists_the_networks_in_range(
    manufacture: Manufacture, world: WifiWorld
) -> None:
    async with Camera(await manufacture("ZC1-CAM-0009"), world) as camera:
        async with softap_client(camera) as client:
            networks = await client.scan()
        assert {n.ssid for n in networks} == {HOME_SSID, OFFICE_SSID}
