"""The fleet/load generator: simulated cameras, and hubs with locks, bound by phone apps.

One event loop runs everything. Every camera lives in its own task for the
whole run (so its MQTT session and supervisor are entered and left by the
same task); a semaphore bounds how many setups run at once, and another how
many event publishes are in flight. Phones share one HTTP connection pool;
each device's MQTT client needs its own TLS context (its own certificate).

Phases:

1. **bring-up**: each camera boots from its flash folder; a phone (one per
   account, devices dealt round-robin) runs the real setup flow against it
   (label → pre-check → bind → protocomm over SoftAP HTTP or in-process →
   Wi-Fi → poll until bound); the camera confirms over MQTT through the
   bridge. Setup latency = label scanned → app sees ``bound``.
2. **events**: motion events at ``events_per_second`` across the fleet for
   ``event_seconds``; latency = publish → broker acknowledgement (QoS 1).
   Hubs are set up the same way; then each pairs its locks over its own
   virtual BLE link, asked by the phone through
   ``POST /v1/devices/{hub}/ble-pairings`` with a fresh pairing token
   (setup latency = button pressed → pairing token activated).
3. **check**: for a sample of cameras, every event sent must be readable
   through the API (``GET /v1/devices/{serial}/events``).

The result is a :class:`~simulators.fleet_report.FleetStats`; the progress
line goes to ``progress`` (stderr in the CLI) while the run lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal, TextIO

import aiohttp

from provisioning.protocomm.bumble_backend import VirtualBleLink
from simulators.app import (
    CodeReader,
    GeoLocation,
    InProcessLink,
    LocalLink,
    PhoneApp,
    SoftApLink,
    WifiChoice,
)
from simulators.camera import Camera
from simulators.device_mqtt import SessionOptions
from simulators.fleet_report import FleetStats, ProgressDisplay
from simulators.hub import Hub
from simulators.lock import Lock
from simulators.wifi_world import AccessPoint, WifiWorld

_LOGGER = logging.getLogger(__name__)

FLEET_SSID: Final = "zanuo-fleet"
FLEET_BSSID: Final = bytes.fromhex("02005a4e0001")
ACCOUNT_PASSWORD_BYTES: Final = 18
MAX_EVENTS_IN_FLIGHT: Final = 256
DELIVERY_SAMPLE: Final = 20
FLEET_SESSION: Final = SessionOptions(backoff_initial_s=0.2, backoff_max_s=5.0)


@dataclasses.dataclass(frozen=True, slots=True)
class HubGroup:
    """A hub and the code-less locks it pairs over its own BLE link."""

    hub_folder: Path
    lock_folders: Sequence[Path]


@dataclasses.dataclass(frozen=True, slots=True)
class FleetPlan:
    """What to run: where the service is, which devices, how hard."""

    api_url: str
    broker: tuple[str, int]
    flash_folders: Sequence[Path]
    read_code: CodeReader
    location: GeoLocation
    events_per_second: float = 10.0
    event_seconds: float = 10.0
    concurrency: int = 16
    accounts: int = 1
    link: Literal["softap", "local"] = "softap"
    broker_ca_file: Path | None = None
    setup_timeout_s: float = 120.0
    poll_s: float = 0.5  # how often a phone polls its binding, as a real app would
    delivery_timeout_s: float = 60.0
    session_options: SessionOptions = FLEET_SESSION
    hubs: Sequence[HubGroup] = ()

    @property
    def device_count(self) -> int:
        """Return how many devices the plan brings up (cameras, hubs and locks)."""
        return len(self.flash_folders) + sum(1 + len(g.lock_folders) for g in self.hubs)


class _Fleet:
    """One run's shared state (one event loop: no locks needed)."""

    def __init__(self, plan: FleetPlan, stats: FleetStats) -> None:
        self.plan = plan
        self.stats = stats
        self.wifi_password = secrets.token_urlsafe(12)
        home = AccessPoint(
            FLEET_SSID.encode(), FLEET_BSSID, rssi=-45, password=self.wifi_password.encode()
        )
        # A /16 so every camera of a large fleet gets a DHCP lease.
        self.world = WifiWorld([home], join_delay=0.0, scan_delay=0.0, subnet="10.42.0.0/16")
        self.setups = asyncio.Semaphore(max(1, plan.concurrency))
        self.online: list[Camera] = []
        self.sent: dict[str, list[str]] = {}
        self.stop = asyncio.Event()
        self.brought_up = asyncio.Event()
        self.pending = plan.device_count

    def done_one(self) -> None:
        """Note that one device finished bring-up (either way)."""
        self.pending -= 1
        if self.pending <= 0:
            self.brought_up.set()

    def link_to(self, camera: Camera) -> LocalLink:
        """Return how the phone reaches ``camera`` in setup mode."""
        if self.plan.link == "local":
            return InProcessLink(camera.provisioning.protocomm)
        return SoftApLink(camera.http_url)

    async def run_device(self, folder: Path, phone: PhoneApp) -> None:
        """Boot one camera, set it up, keep it online until the run stops."""
        stage = "boot"
        try:
            camera = Camera(
                folder,
                self.world,
                broker_ca_file=self.plan.broker_ca_file,
                session_options=self.plan.session_options,
            )
            async with camera:
                stage = "setup"
                async with self.setups, asyncio.timeout(self.plan.setup_timeout_s):
                    started = time.perf_counter()
                    await phone.set_up_camera(
                        camera.flash.info.label_payload,
                        self.link_to(camera),
                        WifiChoice(FLEET_SSID, [self.wifi_password]),
                        broker=self.plan.broker,
                    )
                    self.stats.bind_latencies.append(time.perf_counter() - started)
                    self.stats.bound += 1
                    await camera.wait_online()
                    self.stats.online += 1
                    self.online.append(camera)
                stage = "online"
                self.done_one()
                await self.stop.wait()
        except Exception as err:  # one device's failure is counted by reason, not the run's end
            if stage == "online":
                raise
            self.stats.failed(stage, err)
            _LOGGER.debug("%s of %s failed: %s", stage, folder.name, type(err).__name__)
            self.done_one()

    async def run_hub(self, group: HubGroup, phone: PhoneApp) -> None:
        """Boot a hub, set it up, pair its locks through the API, keep them until the end."""
        stage, finished = "boot", 0
        try:
            async with contextlib.AsyncExitStack() as stack:
                link = await stack.enter_async_context(VirtualBleLink())
                hub = await stack.enter_async_context(
                    Hub(
                        group.hub_folder,
                        self.world,
                        ble_link=link,
                        broker_ca_file=self.plan.broker_ca_file,
                        session_options=self.plan.session_options,
                    )
                )
                stage = "setup"
                async with self.setups, asyncio.timeout(self.plan.setup_timeout_s):
                    started = time.perf_counter()
                    await phone.set_up_camera(
                        hub.flash.info.label_payload,
                        SoftApLink(hub.http_url),
                        WifiChoice(FLEET_SSID, [self.wifi_password]),
                        broker=self.plan.broker,
                    )
                    self.stats.bind_latencies.append(time.perf_counter() - started)
                    self.stats.bound += 1
                    await hub.wait_online()
                    # The hub sets its agent once its MQTT session is up; no event to await.
                    while hub.agent is None:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                    self.stats.online += 1
                self.done_one()
                finished += 1
                for folder in group.lock_folders:
                    stage = "pair"
                    lock = await stack.enter_async_context(Lock(folder, link))
                    async with self.setups, asyncio.timeout(self.plan.setup_timeout_s):
                        started = time.perf_counter()
                        await lock.press_button()
                        token = await phone.pairing_token()
                        await phone.pair_through_hub(hub.serial, token)
                        await phone.wait_activated(token)
                        self.stats.bind_latencies.append(time.perf_counter() - started)
                        self.stats.bound += 1
                        self.stats.online += 1
                    self.done_one()
                    finished += 1
                stage = "online"
                await self.stop.wait()
        except Exception as err:  # counted by reason; the hub's remaining devices are done
            if stage == "online":
                raise
            self.stats.failed(stage, err)
            _LOGGER.debug("%s of %s failed: %s", stage, group.hub_folder.name, type(err).__name__)
            for _ in range(1 + len(group.lock_folders) - finished):
                self.done_one()

    async def send_events(self) -> None:
        """Publish motion events at the planned rate, round-robin over online cameras."""
        plan, stats = self.plan, self.stats
        if not self.online or plan.events_per_second <= 0 or plan.event_seconds <= 0:
            return
        total = int(plan.events_per_second * plan.event_seconds)
        interval = 1.0 / plan.events_per_second
        in_flight = asyncio.Semaphore(MAX_EVENTS_IN_FLIGHT)
        loop = asyncio.get_running_loop()
        stats.events_started = time.perf_counter()
        start = loop.time()
        cameras = itertools.cycle(list(self.online))
        async with asyncio.TaskGroup() as group:
            for index in range(total):
                delay = start + index * interval - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await in_flight.acquire()
                group.create_task(self._one_event(next(cameras), in_flight))
        stats.events_finished = time.perf_counter()

    async def _one_event(self, camera: Camera, in_flight: asyncio.Semaphore) -> None:
        stats = self.stats
        stats.events_sent += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(30):
                event_id = await camera.motion()
        except Exception as err:  # counted by reason in the report
            stats.failed("event", err)
            return
        finally:
            in_flight.release()
        stats.event_latencies.append(time.perf_counter() - started)
        stats.events_acked += 1
        self.sent.setdefault(camera.serial, []).append(event_id)

    async def check_delivery(self, phones: dict[str, PhoneApp]) -> None:
        """Check that every event sent by a sample of cameras is readable through the API."""
        sample = [serial for serial in self.sent if serial in phones][:DELIVERY_SAMPLE]
        expected = {serial: set(self.sent[serial][-50:]) for serial in sample}
        self.stats.events_checked = sum(len(ids) for ids in expected.values())
        delivered = 0
        try:
            async with asyncio.timeout(self.plan.delivery_timeout_s):
                for serial, ids in expected.items():
                    while True:
                        seen = {e["event_id"] for e in await phones[serial].events(serial)}
                        if ids <= seen:
                            delivered += len(ids)
                            break
                        await asyncio.sleep(0.2)
        except TimeoutError as err:
            self.stats.failed("delivery", err)
        self.stats.events_delivered = delivered


async def run_fleet(plan: FleetPlan, *, progress: TextIO | None = None) -> FleetStats:
    """Run the whole fleet plan and return what was measured."""
    stats = FleetStats(requested=plan.device_count)
    fleet = _Fleet(plan, stats)
    run_id = secrets.token_hex(4)
    connector = aiohttp.TCPConnector(limit=max(16, plan.concurrency * 2))
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
        )
        if progress is not None:
            await stack.enter_async_context(ProgressDisplay(stats, progress))
        phones: list[PhoneApp] = []
        for index in range(max(1, plan.accounts)):
            phone = await stack.enter_async_context(
                PhoneApp(plan.api_url, location=plan.location, http=http, poll_interval=plan.poll_s)
            )
            await phone.register(
                f"fleet-{run_id}-{index}@example.com",
                secrets.token_urlsafe(ACCOUNT_PASSWORD_BYTES),
                plan.read_code,
            )
            phones.append(phone)
        owner_of: dict[str, PhoneApp] = {}
        if not plan.device_count:
            fleet.brought_up.set()
        async with asyncio.TaskGroup() as group:
            for index, folder in enumerate(plan.flash_folders):
                phone = phones[index % len(phones)]
                owner_of[folder.name] = phone
                group.create_task(fleet.run_device(folder, phone), name=f"fleet-{folder.name}")
            for index, hub_group in enumerate(plan.hubs):
                phone = phones[index % len(phones)]
                name = f"fleet-{hub_group.hub_folder.name}"
                group.create_task(fleet.run_hub(hub_group, phone), name=name)
            try:
                await fleet.brought_up.wait()
                stats.bind_finished = time.perf_counter()
                await fleet.send_events()
                await fleet.check_delivery(owner_of)
            finally:
                fleet.stop.set()
    return stats


__all__ = ["FLEET_SSID", "FleetPlan", "HubGroup", "run_fleet"]
