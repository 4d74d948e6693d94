"""Client features beyond the main flow: capabilities, custom endpoints, ctrl, paging, cookies."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from provisioning.protocomm.bind import BindRequest
from provisioning.protocomm.client import Credentials, ProvisioningClient, security_for
from provisioning.protocomm.device import SessionState
from provisioning.protocomm.endpoints import CAP_NO_POP, CAP_NO_SEC, PROV_SESSION
from provisioning.protocomm.errors import WifiConnectFailed
from provisioning.protocomm.http import SESSION_COOKIE, HttpTransport, ProtocommHttpServer
from provisioning.protocomm.local import LocalTransport
from provisioning.protocomm.security import (
    Sec0Client,
    Sec0Config,
    Sec1Client,
    Sec1Config,
    Sec2Client,
    Sec2Config,
    SecurityConfig,
)
from provisioning.protocomm.service import ProvisioningDevice
from provisioning.protocomm.wifi import AuthMode, StationState
from simulators.wifi_world import AccessPoint, WifiWorld

from .conftest import HOME_PASSWORD, HOME_SSID, POP, SRP_PASSWORD, SRP_SALT, ble_link, http_link


async def echo_upper(session_id: int, data: bytes) -> bytes:
    """A custom endpoint for tests."""
    return data.upper()


async def test_custom_endpoint_round_trips_through_the_session(wifi_world: WifiWorld) -> None:
    device = ProvisioningDevice(Sec2Config.from_password(SRP_PASSWORD), wifi_world.station("cam"))
    device.add_endpoint("zn-echo", echo_upper)
    async with device, http_link(device) as link, link.connect() as client:
        await client.establish_session(Credentials(password=SRP_PASSWORD))
        assert await client.call("zn-echo", b"hello") == b"HELLO"
        assert await client.call("zn-echo", b"again") == b"AGAIN"


async def test_scan_reads_every_result_in_pages_of_four_over_ble() -> None:
    aps = [
        AccessPoint(f"ap-{i}".encode(), bytes([0, 1, 2, 3, 4, i]), channel=1 + i, rssi=-30 - i)
        for i in range(9)
    ]
    world = WifiWorld(aps, scan_delay=0)
    device = ProvisioningDevice(Sec1Config(pop=POP), world.station("cam"))
    async with device, ble_link(device) as link, link.connect() as client:
        await client.establish_session(Credentials(pop=POP))
        found = await client.scan(blocking=False)
    assert [ap.ssid for ap in found] == [f"ap-{i}".encode() for i in range(9)]
    assert found[0].auth is AuthMode.WPA2_PSK


async def test_reset_after_failure_returns_to_disconnected_and_reprovision_calls_the_hook(
    wifi_world: WifiWorld,
) -> None:
    reprovisioned: list[bool] = []
    device = ProvisioningDevice(
        Sec1Config(pop=POP),
        wifi_world.station("cam"),
        on_reprovision=lambda: reprovisioned.append(True),
    )
    async with device, LocalTransport(device.protocomm) as transport:
        client = ProvisioningClient(transport)
        await client.establish_session(Credentials(pop=POP))
        await client.set_wifi_config(HOME_SSID, b"wrong")
        await client.apply_wifi_config()
        with pytest.raises(WifiConnectFailed):
            async with asyncio.timeout(5):
                await client.wait_for_wifi()
        await client.reset_wifi()
        after_reset = await client.get_wifi_status()
        async with asyncio.timeout(5):
            await client.provision_wifi(HOME_SSID, HOME_PASSWORD)
        await client.reprovision()
        after_reprov = await client.get_wifi_status()
    assert after_reset.state is StationState.DISCONNECTED
    assert after_reprov.state is StationState.DISCONNECTED
    assert reprovisioned == [True]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (Sec0Config(), Sec0Client),
        (Sec1Config(pop=None), Sec1Client),
        (Sec2Config.from_password("x", salt=bytes(16), patch=0), Sec2Client),
    ],
)
async def test_client_picks_security_from_proto_ver(
    config: Sec0Config | Sec1Config | Sec2Config, expected: type, wifi_world: WifiWorld
) -> None:
    device = ProvisioningDevice(config, wifi_world.station("cam"))
    async with device, LocalTransport(device.protocomm) as transport:
        client = ProvisioningClient(transport)
        version = await client.get_version()
        security = security_for(version, Credentials(pop=b"ignored", password="x"))
        await client.establish_session(security=security)
        state = device.protocomm.session_state(transport.session_id)
    assert isinstance(security, expected)
    assert state is SessionState.ESTABLISHED
    assert (CAP_NO_SEC in version.capabilities) == isinstance(config, Sec0Config)
    assert (CAP_NO_POP in version.capabilities) == isinstance(config, Sec1Config)
    if isinstance(config, Sec2Config):
        assert version.sec_patch_ver == 0


async def test_cookie_resumes_the_session_on_a_new_connection(wifi_world: WifiWorld) -> None:
    device = ProvisioningDevice(Sec1Config(pop=POP), wifi_world.station("cam"))
    async with device, ProtocommHttpServer(device.protocomm) as server:
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as http:

            async def send(data: bytes) -> bytes:
                async with http.post(f"{server.url}/{PROV_SESSION}", data=data) as response:
                    return await response.read()

            channel = await Sec1Client(POP).handshake(send)
        cookie = next(c.value for c in jar if c.key == SESSION_COOKIE)
        async with aiohttp.ClientSession(cookies={SESSION_COOKIE: cookie}) as fresh:
            request = channel.encrypt(b"\x08\x00\x52\x00")  # get-status, plaintext protobuf
            async with fresh.post(f"{server.url}/prov-config", data=request) as response:
                assert response.status == 200
                answer = channel.decrypt(await response.read())
    assert answer.startswith(b"\x08\x01")  # TypeRespGetStatus


async def test_unknown_endpoint_is_404_over_http(wifi_world: WifiWorld) -> None:
    device = ProvisioningDevice(Sec1Config(pop=POP), wifi_world.station("cam"))
    async with (
        device,
        ProtocommHttpServer(device.protocomm) as server,
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/no-such-thing", data=b"x") as response,
    ):
        assert response.status == 404


class _TokenKeeper:
    serial = "ZN-LOG-1"

    def signing_key(self) -> None:
        return None

    async def accept_bind(self, request: BindRequest) -> None:
        logging.getLogger("test").debug("bind accepted: %r", request)


async def test_logs_never_contain_passphrase_pop_password_or_token(
    wifi_world: WifiWorld, caplog: pytest.LogCaptureFixture
) -> None:
    token = b"tok-CANARY-7f3a9"
    cases: list[tuple[SecurityConfig, Credentials]] = [
        (Sec1Config(pop=b"POP-CANARY-51c2"), Credentials(pop=b"POP-CANARY-51c2")),
        (
            Sec2Config.from_password("SRP-CANARY-88d1", salt=SRP_SALT),
            Credentials(password="SRP-CANARY-88d1"),
        ),
    ]
    for config, creds in cases:
        device = ProvisioningDevice(config, wifi_world.station("cam"), bind_handler=_TokenKeeper())
        with caplog.at_level(logging.DEBUG):
            async with device, http_link(device) as link, link.connect() as client:
                await client.establish_session(creds)
                await client.bind(token, "mqtt.example", 8883)
                async with asyncio.timeout(5):
                    await client.provision_wifi(HOME_SSID, HOME_PASSWORD)
                with pytest.raises(WifiConnectFailed, match="AuthError"):
                    async with asyncio.timeout(5):
                        await client.provision_wifi(HOME_SSID, b"PASS-CANARY-0b1e")
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "zanuo-home" in text  # the SSID is logged, so logging did happen
    for canary in ("CANARY", HOME_PASSWORD.decode()):
        assert canary not in text


async def test_http_transport_refuses_requests_after_close(wifi_world: WifiWorld) -> None:
    device = ProvisioningDevice(Sec1Config(pop=POP), wifi_world.station("cam"))
    async with device, ProtocommHttpServer(device.protocomm) as server:
        transport = HttpTransport(server.url)
        async with transport:
            await ProvisioningClient(transport).get_version()
        with pytest.raises(Exception, match="not open"):
            await ProvisioningClient(transport).get_version()
