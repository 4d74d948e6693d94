"""``zanuo simulate camera|hub|lock|fleet``: simulated devices and phones against a running service.

The service runs elsewhere (``scripts/serve`` / ``zanuo serve``); this command
shares its data directory (same ``--config``, or ``--data-dir``) to
manufacture devices into the registry, read verification codes from the
development outbox and find the managed broker. Flash folders go to
``--flash-dir`` (default ``./simulated-devices``), never into the data
directory: like a real device's flash they hold Wi-Fi passphrases.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets as pysecrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from provisioning.cli.common import SubParsers
from provisioning.cli.devices_cmd import open_registry
from provisioning.config import Secrets, Settings, load_secrets, load_settings
from provisioning.errors import AccountExists, ConfigError, NotFound, ServiceUnavailable
from simulators.app import (
    BleLink,
    GeoLocation,
    LocalLink,
    PhoneApp,
    SoftApLink,
    WifiChoice,
    outbox_code_reader,
)
from simulators.fleet_report import format_report
from simulators.wifi_world import AccessPoint, WifiWorld

if TYPE_CHECKING:
    from simulators.camera import WifiDevice

DEFAULT_API: Final = "http://{host}:{port}"
DEFAULT_FLASH_DIR: Final = Path("simulated-devices")
HOME_SSID: Final = "zanuo-sim-home"
HOME_BSSID: Final = bytes.fromhex("02005a4e0002")
MODELS: Final = {"camera": "CAM-100", "hub": "HUB-1", "lock": "LOCK-2"}
CAPABILITIES: Final = {
    "camera": ["wifi", "ble"],
    "hub": ["wifi", "ble", "ble_hub"],
    "lock": ["ble"],
}
SERIAL_PREFIX: Final = {"camera": "ZC1", "hub": "ZH1", "lock": "ZL1"}
# Where the simulated phone is: held as the canary it is, never sent.
PHONE_LOCATION: Final = GeoLocation(52.5200066, 13.4049540)


# --------------------------------------------------------------------------- shared pieces


def require_simulators() -> None:
    """Fail with the install command when the simulators' BLE stack (bumble) is missing."""
    try:
        import bumble  # noqa: F401 (only checks that it is installed)
    except ImportError:
        raise ConfigError(
            "the simulators need the `sim` extra: .venv/bin/pip install -e '.[sim]'",
            key="extras",
        ) from None


class Narrator:
    """Prints each step of a run as it happens, with the time since the start."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._started = time.perf_counter()

    def __call__(self, text: str) -> None:
        """Print one step."""
        elapsed = time.perf_counter() - self._started
        self._stream.write(f"[{elapsed:6.2f}s] {text}\n")
        self._stream.flush()

    def indented(self, prefix: str) -> Callable[[str], None]:
        """Return a printer that prefixes each step (one device's flow)."""
        return lambda text: self(f"{prefix}{text}")


def new_serials(kind: str, count: int) -> list[str]:
    """Return fresh serials for simulated devices of ``kind`` (one random run tag)."""
    tag = pysecrets.token_hex(3).upper()
    return [f"{SERIAL_PREFIX[kind]}-S{tag}-{n:05d}" for n in range(count)]


def write_factory_file(path: Path, devices: Sequence[tuple[str, str]], flash_dir: Path) -> None:
    """Write a factory import file for ``(serial, kind)`` devices (codes are generated later)."""
    flash_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for serial, kind in devices:
        row: dict[str, object] = {
            "serial": serial,
            "model": MODELS[kind],
            "type": kind,
            "capabilities": CAPABILITIES[kind],
            "firmware_version": "1.0.0",
        }
        if kind == "lock":
            row["label_code"] = None
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


async def manufacture(
    settings: Settings,
    secrets: Secrets,
    devices: Sequence[tuple[str, str]],
    flash_dir: Path,
) -> list[Path]:
    """Import ``(serial, kind)`` devices into the registry, making their flash in ``flash_dir``."""
    with tempfile.TemporaryDirectory(prefix="zanuo-factory-") as scratch:
        factory_file = Path(scratch) / "factory.jsonl"
        await asyncio.to_thread(write_factory_file, factory_file, devices, flash_dir)
        async with open_registry(settings, secrets) as registry:
            await registry.import_file(factory_file, generate_into=flash_dir)
    return [flash_dir / serial for serial, _ in devices]


def home_world() -> tuple[WifiWorld, str]:
    """Return a simulated home network and its (random) password."""
    password = pysecrets.token_urlsafe(12)
    world = WifiWorld(
        [AccessPoint(HOME_SSID.encode(), HOME_BSSID, rssi=-42, password=password.encode())]
    )
    return world, password


@contextlib.asynccontextmanager
async def signed_in_phone(
    api_url: str, outbox_file: Path, email: str, password: str, on_step: Callable[[str], None]
) -> AsyncIterator[PhoneApp]:
    """Open a phone signed in as ``email`` (registered on first use with the outbox code)."""
    async with PhoneApp(api_url, location=PHONE_LOCATION, on_step=on_step) as phone:
        try:
            await phone.register(email, password, outbox_code_reader(outbox_file))
            on_step(f"signed up {email} (code read from the development outbox)")
        except AccountExists:
            await phone.login(email, password)
            on_step(f"signed in {email}")
        yield phone


async def set_up_wifi_device(
    phone: PhoneApp,
    device: WifiDevice,
    link: LocalLink,
    world_password: str,
    broker: tuple[str, int],
    *,
    wrong_first: bool = False,
) -> None:
    """Run the app's setup flow against a camera or hub and wait for it to come online."""
    passwords = [world_password]
    if wrong_first:
        passwords.insert(0, pysecrets.token_urlsafe(12))
    await phone.set_up_camera(
        device.flash.info.label_payload, link, WifiChoice(HOME_SSID, passwords), broker=broker
    )
    await device.wait_online()


def is_event(event_id: str) -> Callable[[dict[str, Any]], bool]:
    """Return a feed filter for one event id."""
    return lambda message: bool(message.get("event_id") == event_id)


# --------------------------------------------------------------------------- the command


def register(sub: SubParsers) -> None:
    """Add the ``simulate`` commands."""
    simulate = sub.add_parser("simulate", help="simulated devices and phones, against a service")
    simulate_sub = simulate.add_subparsers(dest="simulate_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--api", default=None, help="the service's base URL (default: from the settings)"
        )
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="the running service's data directory (default: from the settings)",
        )
        parser.add_argument(
            "--broker",
            default=None,
            metavar="HOST:PORT",
            help="the MQTT broker devices use (default: the managed broker)",
        )
        parser.add_argument(
            "--flash-dir",
            type=Path,
            default=DEFAULT_FLASH_DIR,
            help="where simulated device flash goes (keep it out of the data dir)",
        )

    helps = {
        "camera": "manufacture a camera, set it up with a phone, send events",
        "hub": "manufacture a BLE hub and set it up with a phone",
        "lock": "manufacture a hub and a lock; pair the lock through the hub",
    }
    for kind, text in helps.items():
        parser = simulate_sub.add_parser(kind, help=text)
        common(parser)
        parser.add_argument("--link", choices=["softap", "ble"], default="softap")
        parser.add_argument("--email", default=None, help="the owner account (default: new)")
        parser.add_argument("--password", default=None, help="its password (default: random)")
        parser.add_argument("--events", type=int, default=1, help="motion events to send")
        parser.add_argument(
            "--stay", action="store_true", help="keep the device online until Ctrl-C"
        )
        parser.set_defaults(handler=simulate_device, kind=kind)

    fleet = simulate_sub.add_parser("fleet", help="N cameras bound and sending events; a report")
    common(fleet)
    fleet.add_argument("-n", "--devices", type=int, default=100)
    fleet.add_argument("--rate", type=float, default=50.0, help="events per second, fleet-wide")
    fleet.add_argument("--duration", type=float, default=10.0, help="seconds of events")
    fleet.add_argument("--concurrency", type=int, default=32, help="setups in flight")
    fleet.add_argument("--accounts", type=int, default=None, help="default: one per 200")
    fleet.add_argument("--link", choices=["softap", "local"], default="softap")
    fleet.add_argument("--hubs", type=int, default=0, help="BLE hubs, each pairing locks")
    fleet.add_argument("--locks-per-hub", type=int, default=2)
    fleet.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    fleet.set_defaults(handler=simulate_fleet)


def _target(
    args: argparse.Namespace, settings: Settings, secrets: Secrets
) -> tuple[Settings, Secrets, str, tuple[str, int]]:
    if args.data_dir is not None:
        environ = {**os.environ, "ZANUO_PATHS__DATA_DIR": str(args.data_dir)}
        settings = load_settings(Path(args.config) if args.config else None, environ=environ)
        secrets = load_secrets(settings, generate=False)
    api = args.api or DEFAULT_API.format(host=settings.server.host, port=settings.server.port)
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        broker = (host, int(port))
    else:
        broker = (settings.mqtt.managed_host, settings.mqtt.managed_port)
    return settings, secrets, api.rstrip("/"), broker


async def simulate_device(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Manufacture a camera, a hub or a hub and a lock; set them up through a simulated phone."""
    require_simulators()
    from provisioning.protocomm.bumble_backend import VirtualBleLink
    from simulators.camera import Camera
    from simulators.hub import Hub
    from simulators.lock import Lock

    settings, secrets, api, broker = _target(args, settings, secrets)
    say = Narrator()
    kind: str = args.kind
    wifi_kind = "camera" if kind == "camera" else "hub"
    (serial,) = new_serials(wifi_kind, 1)
    wanted = [(serial, wifi_kind)]
    if kind == "lock":
        wanted.append((new_serials("lock", 1)[0], "lock"))
    folders = await manufacture(settings, secrets, wanted, args.flash_dir)
    say(
        "manufactured " + ", ".join(f"{k} {s}" for s, k in wanted) + f" (flash in {args.flash_dir})"
    )
    world, wifi_password = home_world()
    email = args.email or f"sim-{pysecrets.token_hex(4)}@example.com"
    password = args.password or pysecrets.token_urlsafe(16)
    async with contextlib.AsyncExitStack() as stack:
        radio = None
        if args.link == "ble" or wifi_kind == "hub":
            radio = await stack.enter_async_context(VirtualBleLink())
        device: WifiDevice = await stack.enter_async_context(
            (Hub if wifi_kind == "hub" else Camera)(folders[0], world, ble_link=radio)
        )
        phone = await stack.enter_async_context(
            signed_in_phone(api, settings.data_dir / "outbox.jsonl", email, password, say)
        )
        link: LocalLink = SoftApLink(device.http_url)
        if args.link == "ble" and radio is not None:
            link = BleLink.on_virtual_link(f"ZN-{serial}", await radio.add_central("phone"))
        async with asyncio.timeout(120):
            await set_up_wifi_device(phone, device, link, wifi_password, broker, wrong_first=True)
        say(f"{serial} is online over MQTT (mTLS as {serial})")
        if kind == "lock" and radio is not None:
            lock = await stack.enter_async_context(Lock(folders[1], radio))
            await lock.press_button()
            say(f"lock {lock.serial}: button pressed, pairing mode")
            token = await phone.pairing_token()
            try:
                await phone.pair_through_hub(serial, token)
            except NotFound as err:
                if type(err) is not NotFound:  # the hub is missing, not the route
                    raise
                raise ServiceUnavailable(
                    "this service has no hub pairing route (POST /v1/devices/{hub}/ble-pairings)"
                ) from None
            async with asyncio.timeout(60):
                await phone.wait_activated(token)
            say(f"lock {lock.serial} bound through hub {serial}")
        for _ in range(max(0, args.events) if kind == "camera" else 0):
            event_id = await device.publish_event("motion")
            async with asyncio.timeout(30):
                message = await phone.wait_message(is_event(event_id))
            say(f"event {message['type']} {event_id} reached {email}'s message feed")
        if args.stay:
            say("online; press Ctrl-C to stop")
            await asyncio.Event().wait()
    return 0


async def simulate_fleet(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Run the fleet generator and print its report."""
    require_simulators()
    from simulators.fleet import FleetPlan, HubGroup, run_fleet

    settings, secrets, api, broker = _target(args, settings, secrets)
    cameras = max(0, args.devices)
    hubs = new_serials("hub", max(0, args.hubs))
    per_hub = max(0, args.locks_per_hub)
    locks = new_serials("lock", len(hubs) * per_hub)
    wanted = [(s, "camera") for s in new_serials("camera", cameras)]
    wanted += [(s, "hub") for s in hubs] + [(s, "lock") for s in locks]
    count = len(wanted)
    started = time.perf_counter()
    made = await manufacture(settings, secrets, wanted, args.flash_dir)
    folders = made[:cameras]
    lock_folders = made[cameras + len(hubs) :]
    groups = [
        HubGroup(hub_folder, lock_folders[i * per_hub : (i + 1) * per_hub])
        for i, hub_folder in enumerate(made[cameras : cameras + len(hubs)])
    ]
    print(
        f"manufactured {cameras} cameras, {len(hubs)} hubs and {len(locks)} locks"
        f" in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )
    accounts = args.accounts or max(1, (count + 199) // 200)
    stats = await run_fleet(
        FleetPlan(
            api_url=api,
            broker=broker,
            flash_folders=folders,
            read_code=outbox_code_reader(settings.data_dir / "outbox.jsonl"),
            location=PHONE_LOCATION,
            events_per_second=args.rate,
            event_seconds=args.duration,
            concurrency=args.concurrency,
            accounts=accounts,
            link=args.link,
            hubs=groups,
        ),
        progress=sys.stderr,
    )
    report = stats.report()
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    failed = report["bound"] != count or bool(report["failures"])
    return 1 if failed else 0


__all__ = [
    "Narrator",
    "home_world",
    "manufacture",
    "new_serials",
    "register",
    "set_up_wifi_device",
    "signed_in_phone",
]
