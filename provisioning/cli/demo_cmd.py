"""``zanuo demo``: the whole system on one machine, every step printed as it happens.

On a fresh machine it starts the service in-process on its embedded defaults
(SQLite, the managed Mosquitto and the MQTT bridge, opened exactly as
``zanuo serve`` opens them: :func:`provisioning.cli.serve_cmd.open_service`)
in a temporary data directory (or ``--data-dir``), manufactures a camera, a
hub and a lock through the factory registry, and then plays the phone:

1. signs up (the code comes from the development outbox);
2. sets the camera up over SoftAP, typing a wrong Wi-Fi password first;
3. sets the hub up over BLE;
4. puts the lock in pairing mode and has the hub pair it with a pairing token;
5. shows a camera motion event and the lock's fingerprint-unlock result
   (relayed by the hub) arriving in the owner's message feed.

The default ports are used when free; otherwise free ones are picked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from gateway.ble.agent import BLE_PAIR_COMMAND
from gateway.mqtt.bridge import MqttBridge
from gateway.mqtt.broker import free_local_port
from provisioning.cli.common import SubParsers
from provisioning.cli.serve_cmd import open_service
from provisioning.cli.simulate_cmd import (
    Narrator,
    home_world,
    is_event,
    manufacture,
    new_serials,
    require_simulators,
    set_up_wifi_device,
    signed_in_phone,
)
from provisioning.config import Secrets, Settings, load_secrets, load_settings
from provisioning.domain.commands import DeviceCommand
from provisioning.errors import NotFound
from simulators.app import BleLink, PairingToken, PhoneApp, SoftApLink

DEMO_EMAIL: Final = "demo@example.com"
DEMO_TIMEOUT_S: Final = 180.0
FINGERPRINT: Final = bytes(range(100, 132))  # enrolled on the lock; never leaves it


def register(sub: SubParsers) -> None:
    """Add the ``demo`` command."""
    demo = sub.add_parser(
        "demo", help="run the service in-process and bind a camera, a hub and a lock"
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the service's data here (default: a fresh temporary directory)",
    )
    demo.set_defaults(handler=run_demo)


def _port_or_free(host: str, port: int) -> int:
    """Return ``port`` when nothing listens on it, else (or for port 0) a free one."""
    if port == 0:
        return free_local_port(host)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return free_local_port(host)
    return port


def demo_settings(args: argparse.Namespace, data_dir: Path, base: Settings) -> Settings:
    """Return the embedded defaults on ``data_dir``, moving ports that are taken."""
    environ = {
        **os.environ,
        "ZANUO_PATHS__DATA_DIR": str(data_dir),
        "ZANUO_SERVER__PORT": str(_port_or_free(base.server.host, base.server.port)),
        "ZANUO_MQTT__MANAGED_PORT": str(
            _port_or_free(base.mqtt.managed_host, base.mqtt.managed_port)
        ),
    }
    return load_settings(Path(args.config) if args.config else None, environ=environ)


@contextlib.asynccontextmanager
async def _directories(args: argparse.Namespace) -> AsyncIterator[tuple[Path, Path]]:
    """Yield the data directory and the (separate) directory for device flash."""
    with tempfile.TemporaryDirectory(prefix="zanuo-demo-") as scratch:
        data_dir = args.data_dir or Path(scratch) / "data"
        yield Path(data_dir), Path(scratch) / "devices"


async def _pair_lock(
    phone: PhoneApp, bridge: MqttBridge, hub: str, token: PairingToken, say: Narrator
) -> None:
    """Ask the hub to pair: through the API when it offers the route, else through the bridge."""
    try:
        await phone.pair_through_hub(hub, token)
        say(f"asked {hub} to pair a lock (POST /v1/devices/{hub}/ble-pairings)")
    except NotFound as err:
        if type(err) is not NotFound:  # a missing device, not a missing route
            raise
        command = DeviceCommand(str(uuid.uuid4()), hub, BLE_PAIR_COMMAND, {"token": token.token})
        await bridge.send_now(command, expiry_s=60)
        say(f"sent {hub} a ble_pair command through the bridge (the API has no pairing route)")


async def run_demo(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Start everything, bind a camera, a hub and a lock, and show events in the feed."""
    require_simulators()
    from provisioning.protocomm.bumble_backend import VirtualBleLink
    from simulators.camera import Camera
    from simulators.hub import Hub
    from simulators.lock import Lock

    say = Narrator()
    async with _directories(args) as (data_dir, flash_dir):
        settings = demo_settings(args, data_dir, settings)
        secrets = load_secrets(settings)
        say(f"starting Zanuo Cloud on its embedded defaults, data in {data_dir}")
        async with (
            open_service(settings, secrets) as (_runner, bridge, endpoint),
            asyncio.timeout(DEMO_TIMEOUT_S),
        ):
            api = f"http://{settings.server.host}:{settings.server.port}"
            broker = (endpoint.host, endpoint.port)
            say(f"API on {api}, Mosquitto (mTLS) on {broker[0]}:{broker[1]}, bridge connected")
            await bridge.wait_connected()

            camera_serial, hub_serial, lock_serial = (
                new_serials("camera", 1)[0],
                new_serials("hub", 1)[0],
                new_serials("lock", 1)[0],
            )
            camera_dir, hub_dir, lock_dir = await manufacture(
                settings,
                secrets,
                [(camera_serial, "camera"), (hub_serial, "hub"), (lock_serial, "lock")],
                flash_dir,
            )
            say(f"manufactured camera {camera_serial}, hub {hub_serial}, lock {lock_serial}")
            world, wifi_password = home_world()

            async with (
                VirtualBleLink() as radio,
                Camera(camera_dir, world) as camera,
                Hub(hub_dir, world, ble_link=radio) as hub,
                Lock(lock_dir, radio) as lock,
                signed_in_phone(
                    api,
                    settings.data_dir / "outbox.jsonl",
                    DEMO_EMAIL,
                    "demo password 1",
                    say.indented("   app: "),
                ) as phone,
            ):
                say(f"-- camera {camera_serial} over SoftAP (a wrong Wi-Fi password first)")
                await set_up_wifi_device(
                    phone,
                    camera,
                    SoftApLink(camera.http_url),
                    wifi_password,
                    broker,
                    wrong_first=True,
                )
                say(f"camera {camera_serial} is online")

                say(f"-- hub {hub_serial} over BLE")
                central = await radio.add_central("phone")
                await set_up_wifi_device(
                    phone,
                    hub,
                    BleLink.on_virtual_link(f"ZN-{hub_serial}", central),
                    wifi_password,
                    broker,
                )
                while hub.agent is None:  # noqa: ASYNC110 (the agent starts with the session)
                    await asyncio.sleep(0.05)
                say(f"hub {hub_serial} is online and runs the BLE agent")

                say(f"-- lock {lock_serial} through the hub with a pairing token")
                await lock.press_button()
                say("lock button pressed: pairing mode (advertising the provisioning service)")
                token = await phone.pairing_token()
                say("pairing token issued")
                await _pair_lock(phone, bridge, hub_serial, token, say)
                await phone.wait_activated(token)
                device = await phone.wait_device(lock_serial, lambda d: bool(d["online"]))
                say(f"lock {lock_serial} bound, parent hub {device['parent_hub']}")

                say("-- events")
                event_id = await camera.motion()
                message = await phone.wait_message(is_event(event_id))
                say(f"feed: {message['type']} from {message['serial']} at {message['occurred_at']}")
                await phone.request(
                    "POST",
                    "/v1/me/consents",
                    json={"purpose": "biometric_features", "granted": True},
                )
                say("consent given: keep the results of on-device fingerprint checks")
                lock.enroll_fingerprint(FINGERPRINT)
                await lock.touch(FINGERPRINT)
                message = await phone.wait_message(lambda m: m["serial"] == lock_serial)
                say(
                    f"feed: {message['type']} ({message['result']}) from {message['serial']}"
                    f" via hub {message['via_hub']}"
                )
            say("done; stopping the service")
    return 0
