"""The simulated Wi-Fi world decides joins the way a real network would."""

from __future__ import annotations

import pytest

from provisioning.protocomm.wifi import AuthMode, FailReason, JoinFailed, WifiCredentials
from simulators.wifi_world import AccessPoint, WifiWorld

from .conftest import HOME_BSSID, HOME_PASSWORD, HOME_SSID


async def test_right_password_joins_with_a_stable_lease(wifi_world: WifiWorld) -> None:
    station = wifi_world.station("cam-1")
    first = await station.connect(WifiCredentials(HOME_SSID, HOME_PASSWORD))
    second = await station.connect(WifiCredentials(HOME_SSID, HOME_PASSWORD, HOME_BSSID))
    other = await wifi_world.station("cam-2").connect(WifiCredentials(HOME_SSID, HOME_PASSWORD))
    assert first.ip4_addr == second.ip4_addr != other.ip4_addr
    assert first.bssid == HOME_BSSID
    assert station.join_attempts == 2


@pytest.mark.parametrize(
    ("credentials", "reason"),
    [
        (WifiCredentials(HOME_SSID, b"wrong"), FailReason.AUTH_ERROR),
        (WifiCredentials(b"elsewhere", HOME_PASSWORD), FailReason.NETWORK_NOT_FOUND),
        (WifiCredentials(HOME_SSID, HOME_PASSWORD, bssid=bytes(6)), FailReason.NETWORK_NOT_FOUND),
    ],
)
async def test_failed_join_reports_the_reason(
    wifi_world: WifiWorld, credentials: WifiCredentials, reason: FailReason
) -> None:
    station = wifi_world.station("cam")
    with pytest.raises(JoinFailed) as failure:
        await station.connect(credentials)
    assert failure.value.reason is reason
    assert station.connection is None


async def test_open_network_accepts_any_passphrase_and_switched_off_ap_is_not_found() -> None:
    cafe = AccessPoint(b"cafe", bytes.fromhex("0a0b0c0d0e0f"), auth=AuthMode.OPEN)
    world = WifiWorld([cafe], join_delay=0)
    station = world.station("lock")
    assert (await station.connect(WifiCredentials(b"cafe", b"anything"))).auth is AuthMode.OPEN
    world.remove_access_point(cafe.bssid)
    assert await station.scan() == []
    with pytest.raises(JoinFailed):
        await station.connect(WifiCredentials(b"cafe", b""))


def test_access_point_repr_and_credentials_repr_hide_secrets() -> None:
    ap = AccessPoint(HOME_SSID, HOME_BSSID, password=HOME_PASSWORD)
    creds = WifiCredentials(HOME_SSID, HOME_PASSWORD)
    assert HOME_PASSWORD.decode() not in repr(ap)
    assert HOME_PASSWORD.decode() not in repr(creds)
