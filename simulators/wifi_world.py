"""A simulated Wi-Fi world: access points and the stations of simulated devices.

A :class:`WifiWorld` holds access points (SSID, BSSID, channel, RSSI, auth
mode, password) and decides what a join does: success with a DHCP-style
address, ``AUTH_ERROR`` for a wrong password, ``NETWORK_NOT_FOUND`` when no
access point matches. :meth:`WifiWorld.station` hands a device a
:class:`SimulatedStation`, which implements ``provisioning.protocomm.wifi.WifiStation``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from provisioning.protocomm.wifi import (
    AccessPointInfo,
    AuthMode,
    Connection,
    FailReason,
    JoinFailed,
    WifiCredentials,
)

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccessPoint:
    """A simulated access point. ``repr`` hides the password."""

    ssid: bytes
    bssid: bytes
    channel: int = 6
    rssi: int = -50
    auth: AuthMode = AuthMode.WPA2_PSK
    password: bytes = field(default=b"", repr=False)

    def info(self) -> AccessPointInfo:
        """Return what a scan reports about this access point."""
        return AccessPointInfo(self.ssid, self.bssid, self.channel, self.rssi, self.auth)

    def accepts(self, passphrase: bytes) -> bool:
        """Return whether ``passphrase`` authenticates (any passphrase for an open network)."""
        if self.auth is AuthMode.OPEN:
            return True
        return hmac.compare_digest(self.password, passphrase)


class WifiWorld:
    """The radio environment shared by simulated devices."""

    def __init__(
        self,
        access_points: Sequence[AccessPoint] = (),
        *,
        join_delay: float = 0.02,
        scan_delay: float = 0.01,
        subnet: str = "192.168.4.0/24",
    ) -> None:
        self._aps: dict[bytes, AccessPoint] = {ap.bssid: ap for ap in access_points}
        self.join_delay = join_delay
        self.scan_delay = scan_delay
        self._hosts = ipaddress.ip_network(subnet).hosts()
        next(self._hosts)  # .1 is the router
        self._leases: dict[str, str] = {}

    def add_access_point(self, ap: AccessPoint) -> None:
        """Switch an access point on (or replace one with the same BSSID)."""
        self._aps[ap.bssid] = ap

    def remove_access_point(self, bssid: bytes) -> None:
        """Switch an access point off."""
        self._aps.pop(bssid, None)

    @property
    def access_points(self) -> tuple[AccessPoint, ...]:
        """Return the access points that are on."""
        return tuple(self._aps.values())

    def station(self, name: str) -> SimulatedStation:
        """Return a station for the device called ``name`` (its DHCP lease is stable)."""
        return SimulatedStation(self, name)

    def lease(self, name: str) -> str:
        """Return the station's address, handing out a new one on first join."""
        if name not in self._leases:
            self._leases[name] = str(next(self._hosts))
        return self._leases[name]

    def find(self, ssid: bytes, bssid: bytes = b"", channel: int = 0) -> AccessPoint | None:
        """Return the strongest access point with ``ssid`` (and ``bssid``, ``channel`` if set)."""
        candidates = [
            ap
            for ap in self._aps.values()
            if ap.ssid == ssid
            and (not bssid or ap.bssid == bssid)
            and (not channel or ap.channel == channel)
        ]
        return max(candidates, key=lambda ap: ap.rssi, default=None)

    def join(self, name: str, credentials: WifiCredentials) -> Connection:
        """Decide the outcome of a join attempt right now."""
        ap = self.find(credentials.ssid, credentials.bssid, credentials.channel)
        if ap is None:
            raise JoinFailed(FailReason.NETWORK_NOT_FOUND)
        if not ap.accepts(credentials.passphrase):
            raise JoinFailed(FailReason.AUTH_ERROR)
        return Connection(self.lease(name), ap.ssid, ap.bssid, ap.channel, ap.auth)


class SimulatedStation:
    """A device's station interface in a :class:`WifiWorld` (implements ``WifiStation``)."""

    def __init__(self, world: WifiWorld, name: str) -> None:
        self._world = world
        self.name = name
        self.connection: Connection | None = None
        self.join_attempts = 0

    async def scan(self, *, passive: bool = False) -> Sequence[AccessPointInfo]:
        """Return what the radio hears."""
        await asyncio.sleep(self._world.scan_delay)
        return [ap.info() for ap in self._world.access_points]

    async def connect(self, credentials: WifiCredentials) -> Connection:
        """Try to join after the world's join delay."""
        self.join_attempts += 1
        self.connection = None
        await asyncio.sleep(self._world.join_delay)
        try:
            self.connection = self._world.join(self.name, credentials)
        except JoinFailed as err:
            _LOGGER.debug("%s: join %r failed: %s", self.name, credentials.ssid, err.reason.value)
            raise
        return self.connection

    async def disconnect(self) -> None:
        """Leave the network."""
        self.connection = None
