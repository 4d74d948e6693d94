"""Must show 4: after every flow, the phone's location and the Wi-Fi passwords are nowhere.

One scenario runs the flows of the other end-to-end tests back to back (camera
over BLE with a wrong password first, sharing and events, remote Wi-Fi
changes sealed by the app and plain, unbind, factory reset and a new setup
over SoftAP, a lock paired through a hub), with every log record of every
logger at DEBUG written to a file. Then it scans every request the API
received, every file in the service's data directory (database, WAL,
broker persistence and broker log included) and the log file.

Positive controls keep the scan honest: the plain Wi-Fi change *does* put
its password in a request (and nowhere else), and the camera's own flash
*does* hold the home password (base64), so a scanner that finds nothing
because it looks wrong fails the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from provisioning.protocomm.bumble_backend import (
    VirtualBleLink,
)
from provisioning.security.ca import DEVICE_CERT_FILE, read_certificate
from simulators.app import BleLink, PhoneApp, SoftApLink, WifiChoice
from simulators.camera import Camera
from simulators.flash import STATE_FILE
from simulators.hub import Hub
from simulators.lock import Lock
from simulators.wifi_world import WifiWorld
from tests.bridge.conftest import eventually
from tests.e2e.canary import captured_logs, files_under, scan_bytes, scan_files
from tests.e2e.conftest import (
    HOME_PASSWORD,
    HOME_SSID,
    NEW_PASSWORD,
    NEW_SSID,
    PHONE_LOCATION,
    WIFI_PASSWORDS,
    WRONG_PASSWORD,
    Manufacture,
    PhoneFactory,
    Stack,
)
from tests.e2e.test_lock import FAST_AGENT, FAST_SESSION, ask_hub_to_pair, wait_activated

PLAIN_PASSWORD = "canary-plain-wifi-93e1f0"
FINGER = bytes(range(40, 72))
WAIT_S = 60.0


async def camera_life(
    stack: Stack,
    owner: PhoneApp,
    guest: PhoneApp,
    manufacture: Manufacture,
    world: WifiWorld,
    link: VirtualBleLink,
) -> Path:
    """Set a camera up over BLE, share it, change its Wi-Fi twice, unbind, reset, set up again."""
    folder = await manufacture("ZC1-CANARY-01")
    certificate = read_certificate(folder / DEVICE_CERT_FILE)
    async with Camera(folder, world, ble_link=link) as camera:
        central = await link.add_central("owner-phone")
        await owner.set_up_camera(
            camera.flash.info.label_payload,
            BleLink.on_virtual_link(f"ZN-{camera.serial}", central),
            WifiChoice(HOME_SSID, [WRONG_PASSWORD, HOME_PASSWORD]),
            broker=stack.broker_address,
        )
        await camera.wait_online()
        await owner.set_consent("event_screenshots", granted=True)
        await owner.share(camera.serial, "guest@example.com", "control")
        (invitation,) = await guest.invitations()
        await guest.accept(invitation["share_id"])
        event_id = await camera.motion()
        await owner.wait_message(lambda m: m["event_id"] == event_id)
        await owner.wait_device(camera.serial, lambda d: d["online"])

        await owner.change_wifi(camera.serial, NEW_SSID, NEW_PASSWORD, certificate=certificate)
        await eventually(
            lambda: asyncio.sleep(
                0,
                camera.flash.state.wifi is not None
                and camera.flash.state.wifi.ssid == NEW_SSID.encode(),
            )
        )
        # A plain change to a network that does not exist: the camera stays where it is.
        await owner.change_wifi(camera.serial, "zanuo-e2e-nowhere", PLAIN_PASSWORD)
        await camera.doorbell()

        await owner.unbind(camera.serial)
        await camera.wait_idle()
        await owner.set_up_camera(
            camera.flash.info.label_payload,
            SoftApLink(camera.http_url),
            WifiChoice(HOME_SSID, [HOME_PASSWORD]),
            broker=stack.broker_address,
        )
        await camera.wait_online()
        await camera.factory_reset()

        async def released() -> bool:
            return (await owner.bind_state(camera.serial)).relation == "unbound"

        await eventually(released)
        await owner.set_up_camera(
            camera.flash.info.label_payload,
            SoftApLink(camera.http_url),
            WifiChoice(HOME_SSID, [WRONG_PASSWORD, HOME_PASSWORD]),
            broker=stack.broker_address,
        )
        await camera.wait_online()
    return folder


async def lock_life(
    stack: Stack, owner: PhoneApp, manufacture: Manufacture, world: WifiWorld, link: VirtualBleLink
) -> None:
    """Set a hub up, pair a lock through it, unlock with a fingerprint."""
    hub_folder = await manufacture("ZH1-CANARY-01", "hub")
    lock_folder = await manufacture("ZL1-CANARY-01", "lock")
    async with (
        Hub(
            hub_folder, world, ble_link=link, session_options=FAST_SESSION, agent_options=FAST_AGENT
        ) as hub,
        Lock(lock_folder, link, poll_s=0.05) as lock,
    ):
        await owner.set_up_camera(
            hub.flash.info.label_payload,
            SoftApLink(hub.http_url),
            WifiChoice(HOME_SSID, [WRONG_PASSWORD, HOME_PASSWORD]),
            broker=stack.broker_address,
        )
        await hub.wait_online()
        await eventually(lambda: asyncio.sleep(0, hub.agent is not None))
        await lock.press_button()
        token = await owner.pairing_token()
        await ask_hub_to_pair(stack, hub.serial, token.token)
        await wait_activated(owner, token.token_id)
        lock.enroll_fingerprint(FINGER)
        assert await lock.touch(FINGER)
        await owner.wait_message(lambda m: m["serial"] == lock.serial)


async def flush_broker_persistence(stack: Stack) -> Path:
    """Make Mosquitto write its persistence file now (SIGUSR1) and return its path."""
    persisted = stack.broker.config.persistence_dir / "mosquitto.db"
    before = persisted.stat().st_mtime_ns if persisted.exists() else 0
    pid = stack.broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGUSR1)
    await eventually(
        lambda: asyncio.sleep(0, persisted.exists() and persisted.stat().st_mtime_ns != before)
    )
    return persisted


async def test_no_canary_reaches_a_request_a_store_or_a_log(
    stack: Stack,
    phone_factory: PhoneFactory,
    manufacture: Manufacture,
    wifi_world: WifiWorld,
    tmp_path: Path,
) -> None:
    with captured_logs(tmp_path / "all.log") as log_file:
        async with VirtualBleLink() as link, asyncio.timeout(WAIT_S):
            owner = await phone_factory("owner@example.com")
            guest = await phone_factory("guest@example.com")
            camera_folder = await camera_life(stack, owner, guest, manufacture, wifi_world, link)
            await lock_life(stack, owner, manufacture, wifi_world, link)
            persisted = await flush_broker_persistence(stack)

    location = PHONE_LOCATION.canary_strings()
    secrets = (*location, *WIFI_PASSWORDS, PLAIN_PASSWORD)
    stores = files_under(stack.data_dir)
    assert persisted in stores
    if stack.bridge.services.db.is_sqlite:  # on PostgreSQL the database is not a file here
        assert any(p.name.startswith("zanuo.db") for p in stores)
    assert log_file.stat().st_size > 0

    request_leaks = [
        leak
        for request in stack.requests.requests
        for leak in scan_bytes(f"{request.method} {request.path_qs}", request.raw(), secrets)
    ]
    assert {leak.canary for leak in request_leaks} == {PLAIN_PASSWORD}  # the plain change only
    assert scan_files([*stores, log_file], secrets) == []

    # Positive controls: the scanners do find what is really there.
    assert stack.requests.containing("owner@example.com")
    flash_leaks = scan_files([camera_folder / STATE_FILE], [HOME_PASSWORD])
    assert flash_leaks
    assert all(leak.form.startswith("b64") for leak in flash_leaks)
