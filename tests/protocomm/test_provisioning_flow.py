"""Our client provisions our device over HTTP and BLE (bleak → bumble), sec1 and sec2."""

from __future__ import annotations

import asyncio

import pytest

from provisioning.protocomm.client import Credentials
from provisioning.protocomm.errors import HandshakeFailed, WifiConnectFailed
from provisioning.protocomm.proto import constants_pb2
from provisioning.protocomm.wifi import AuthMode, StationState

from .conftest import HOME_BSSID, HOME_PASSWORD, HOME_SSID, POP, SRP_PASSWORD, DeviceLink

RIGHT = Credentials(pop=POP, password=SRP_PASSWORD)
WRONG = Credentials(pop=b"WRONG!", password="WRONG!")


async def test_client_provisions_device_and_reads_back_connected(device_link: DeviceLink) -> None:
    async with device_link.connect() as client:
        version = await client.get_version()
        await client.establish_session(RIGHT)
        networks = await client.scan()
        assert [n.ssid for n in networks] == [HOME_SSID, b"neighbour"]  # strongest first
        await client.set_wifi_config(HOME_SSID, HOME_PASSWORD)
        await client.apply_wifi_config()
        async with asyncio.timeout(5):
            connection = await client.wait_for_wifi()
        status = await client.get_wifi_status()
    assert version.sec_ver in (1, 2)
    assert status.state is StationState.CONNECTED
    assert connection.ssid == HOME_SSID
    assert connection.bssid == HOME_BSSID
    assert connection.auth is AuthMode.WPA2_PSK
    assert connection.ip4_addr.startswith("192.168.4.")
    assert device_link.device.wifi.status.state is StationState.CONNECTED


async def test_wrong_wifi_password_reports_auth_error_then_retry_in_same_session_connects(
    device_link: DeviceLink,
) -> None:
    async with device_link.connect() as client:
        await client.establish_session(RIGHT)
        with pytest.raises(WifiConnectFailed) as failure:
            async with asyncio.timeout(5):
                await client.provision_wifi(HOME_SSID, b"not the password")
        failed_status = await client.get_wifi_status()
        async with asyncio.timeout(5):
            connection = await client.provision_wifi(HOME_SSID, HOME_PASSWORD)
    assert failure.value.reason == "AuthError"
    assert failed_status.state is StationState.CONNECTION_FAILED
    assert connection.ssid == HOME_SSID


async def test_unknown_network_reports_network_not_found(device_link: DeviceLink) -> None:
    async with device_link.connect() as client:
        await client.establish_session(RIGHT)
        with pytest.raises(WifiConnectFailed) as failure:
            async with asyncio.timeout(5):
                await client.provision_wifi(b"nobody-home", HOME_PASSWORD)
    assert failure.value.reason == "NetworkNotFound"


async def test_wrong_pop_or_srp_password_fails_with_crypto_error_and_device_serves_next_client(
    device_link: DeviceLink,
) -> None:
    async with device_link.connect() as intruder:
        with pytest.raises(HandshakeFailed) as failure:
            await intruder.establish_session(WRONG)
    assert failure.value.status == constants_pb2.CryptoError
    assert device_link.device.protocomm.session_count == 0
    async with device_link.connect() as owner:
        await owner.establish_session(RIGHT)
        async with asyncio.timeout(5):
            connection = await owner.provision_wifi(HOME_SSID, HOME_PASSWORD)
    assert connection.ssid == HOME_SSID


async def test_closing_the_connection_closes_the_device_session(device_link: DeviceLink) -> None:
    async with device_link.connect() as client:
        await client.establish_session(RIGHT)
        assert device_link.device.protocomm.session_count == 1
    async with device_link.connect() as client:
        await client.get_version()  # a new connection reaps the old one's session
        assert device_link.device.protocomm.session_count == 0
