"""A simulated BLE hub: a Wi-Fi device like the camera that runs the real BLE hub agent.

Provisioning, binding, reset and Wi-Fi change work exactly as for the camera
(:class:`simulators.camera.WifiDevice`). While its MQTT session is up the hub
runs :class:`gateway.ble.BleHubAgent` on that session: ``ble_pair`` commands
pair locks, and the children's traffic is relayed on
``zn/v1/{hub}/sub/{child}/…``. Paired children are kept in the hub's flash.

The hub's radio is a bumble central on the same ``VirtualBleLink`` as its
locks, driven through the bumble-backed bleak backends; pass
``client_backend``/``scanner_backend`` to use other ones.

Public API::

    hub = Hub(flash_dir, world, ble_link=link, clock=clock, broker=(host, port))
    async with hub:
        ...provision and bind it like a camera (hub.http_url, hub.ble_address)...
        hub.agent                      # the running BleHubAgent (None while offline)
        hub.children                   # paired children from flash
        child = await hub.pair(token)  # what a ``ble_pair`` command does
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from gateway.ble.agent import BLE_PAIR_COMMAND, AgentOptions, BleHubAgent, PairedChild
from gateway.mqtt.payloads import CommandAckPayload, CommandPayload
from provisioning.protocomm.bumble_backend import (
    VirtualBleLink,
    bleak_backend,
    bleak_scanner_backend,
)
from simulators.camera import DeviceNotOnline, WifiDevice
from simulators.device_mqtt import DeviceMqtt
from simulators.flash import ChildLink, DeviceFlash
from simulators.wifi_world import WifiWorld


class Hub(WifiDevice):
    """A Wi-Fi hub that pairs and relays BLE locks."""

    device_type: ClassVar[str] = "hub"

    def __init__(
        self,
        flash: DeviceFlash | Path,
        world: WifiWorld,
        *,
        ble_link: VirtualBleLink | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        agent_options: AgentOptions | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(flash, world, ble_link=ble_link, **kwargs)
        self._client_backend = client_backend
        self._scanner_backend = scanner_backend
        self.agent_options = agent_options
        self.agent: BleHubAgent | None = None

    async def __aenter__(self) -> Self:
        link = self._ble_link
        if link is not None and self._client_backend is None and self._scanner_backend is None:
            central = await link.add_central(f"hub-{self.serial}")
            self._client_backend = bleak_backend(central)
            self._scanner_backend = bleak_scanner_backend(central)
        return await super().__aenter__()

    @property
    def children(self) -> tuple[ChildLink, ...]:
        """Return the children paired through this hub (from flash)."""
        return tuple(self.flash.state.children)

    def _save_children(self, children: tuple[PairedChild, ...]) -> None:
        self.flash.state.children = [ChildLink(c.serial, c.ble_address) for c in children]
        self.flash.save()

    @asynccontextmanager
    async def _while_online(self, session: DeviceMqtt) -> AsyncIterator[None]:
        broker = self._broker_address()
        assert broker is not None  # a session exists only with a broker
        agent = BleHubAgent(
            self.serial,
            session,
            broker_host=broker[0],
            broker_port=broker[1],
            client_backend=self._client_backend,
            scanner_backend=self._scanner_backend,
            children=[PairedChild(c.serial, c.ble_address) for c in self.flash.state.children],
            on_children_changed=self._save_children,
            options=self.agent_options,
        )
        async with agent:
            self.agent = agent
            try:
                yield
            finally:
                self.agent = None

    async def pair(self, token: str, ble_address: str | None = None) -> PairedChild:
        """Pair a lock in pairing mode now (what a ``ble_pair`` command does)."""
        agent = self.agent
        if agent is None:
            raise DeviceNotOnline(self.serial)
        return await agent.pair(token, ble_address)

    async def _device_command(self, command: CommandPayload) -> CommandAckPayload | None:
        if command.name != BLE_PAIR_COMMAND:
            return await super()._device_command(command)
        if self.agent is None:
            return CommandAckPayload(id=command.id, ok=False, error="agent_offline")
        return await self.agent.handle_command(command, None)

    async def _child_command(self, command: CommandPayload, child: str) -> CommandAckPayload | None:
        if self.agent is None:
            return CommandAckPayload(id=command.id, ok=False, error="child_offline")
        return await self.agent.handle_command(command, child)


__all__ = ["Hub"]
