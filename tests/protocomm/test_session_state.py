"""The device's session state machine: order, replays, bounds and connection ties."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from provisioning.protocomm.client import Credentials, ProvisioningClient
from provisioning.protocomm.device import ProtocommDevice, SessionState
from provisioning.protocomm.endpoints import PROV_CONFIG, PROV_SESSION
from provisioning.protocomm.errors import SessionError, TransportError
from provisioning.protocomm.http import SESSION_COOKIE, ProtocommHttpServer
from provisioning.protocomm.local import LocalTransport
from provisioning.protocomm.proto import constants_pb2, sec1_pb2, sec2_pb2, session_pb2
from provisioning.protocomm.security import (
    Sec0Config,
    Sec1Client,
    Sec1Config,
    Sec2Client,
    Sec2Config,
)

from .conftest import POP, SRP_PASSWORD, SRP_SALT


@pytest.fixture
def sec1_device() -> ProtocommDevice:
    """Return a bare sec1 device (no Wi-Fi endpoints needed here)."""
    return ProtocommDevice(Sec1Config(pop=POP), max_sessions=2)


def sec1_cmd1(verify: bytes = b"\x00" * 32) -> bytes:
    """Return a sec1 Command1 message."""
    message = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
    message.sec1.msg = sec1_pb2.Session_Command1
    message.sec1.sc1.client_verify_data = verify
    return message.SerializeToString()


def sec1_cmd0(public: bytes) -> bytes:
    """Return a sec1 Command0 message."""
    message = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
    message.sec1.msg = sec1_pb2.Session_Command0
    message.sec1.sc0.client_pubkey = public
    return message.SerializeToString()


def answer(data: bytes) -> session_pb2.SessionData:
    """Parse a prov-session answer."""
    message = session_pb2.SessionData()
    message.ParseFromString(data)
    return message


async def test_command1_before_command0_is_answered_invalid_session(
    sec1_device: ProtocommDevice,
) -> None:
    reply = answer(await sec1_device.handle(1, PROV_SESSION, sec1_cmd1()))
    assert reply.sec1.msg == sec1_pb2.Session_Response1
    assert reply.sec1.sr1.status == constants_pb2.InvalidSession
    assert sec1_device.session_state(1) is SessionState.NONE


async def test_replayed_command1_after_establishment_is_refused_and_drops_the_session(
    sec1_device: ProtocommDevice,
) -> None:
    sent: list[bytes] = []
    transport = LocalTransport(sec1_device)

    async def recording_send(data: bytes) -> bytes:
        sent.append(data)
        return await transport.request(PROV_SESSION, data)

    await Sec1Client(POP).handshake(recording_send)
    assert sec1_device.session_state(transport.session_id) is SessionState.ESTABLISHED
    reply = answer(await sec1_device.handle(transport.session_id, PROV_SESSION, sent[1]))
    assert reply.sec1.sr1.status == constants_pb2.InvalidSession
    assert sec1_device.session_state(transport.session_id) is SessionState.NONE
    with pytest.raises(TransportError):
        await transport.request(PROV_CONFIG, b"\x08\x00")


async def test_wrong_security_scheme_is_answered_invalid_sec_scheme(
    sec1_device: ProtocommDevice,
) -> None:
    message = session_pb2.SessionData(sec_ver=session_pb2.SecScheme2)
    message.sec2.msg = sec2_pb2.S2Session_Command0
    message.sec2.sc0.client_pubkey = b"\x05"
    reply = answer(await sec1_device.handle(7, PROV_SESSION, message.SerializeToString()))
    assert reply.sec_ver == session_pb2.SecScheme1
    assert reply.sec1.sr0.status == constants_pb2.InvalidSecScheme


async def test_short_public_key_is_answered_invalid_argument(sec1_device: ProtocommDevice) -> None:
    reply = answer(await sec1_device.handle(3, PROV_SESSION, sec1_cmd0(b"\x01" * 31)))
    assert reply.sec1.sr0.status == constants_pb2.InvalidArgument
    assert sec1_device.session_count == 0


async def test_device_refuses_sessions_beyond_its_bound_with_too_many_sessions(
    sec1_device: ProtocommDevice,
) -> None:
    public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    for session_id in (1, 2):
        reply = answer(await sec1_device.handle(session_id, PROV_SESSION, sec1_cmd0(public)))
        assert reply.sec1.sr0.status == constants_pb2.Success
    refused = answer(await sec1_device.handle(3, PROV_SESSION, sec1_cmd0(public)))
    assert refused.sec1.sr0.status == constants_pb2.TooManySessions
    sec1_device.close_session(1)
    accepted = answer(await sec1_device.handle(3, PROV_SESSION, sec1_cmd0(public)))
    assert accepted.sec1.sr0.status == constants_pb2.Success


async def test_stale_half_open_handshake_is_evicted_for_a_newcomer() -> None:
    device = ProtocommDevice(Sec1Config(pop=POP), max_sessions=1, handshake_timeout=0.0)
    public = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    await device.handle(1, PROV_SESSION, sec1_cmd0(public))
    await asyncio.sleep(0.001)
    reply = answer(await device.handle(2, PROV_SESSION, sec1_cmd0(public)))
    assert reply.sec1.sr0.status == constants_pb2.Success
    assert device.session_state(1) is SessionState.NONE


async def test_wrong_srp_password_reports_crypto_error_and_leaves_no_session() -> None:
    device = ProtocommDevice(Sec2Config.from_password(SRP_PASSWORD, salt=SRP_SALT))
    async with LocalTransport(device) as transport:
        client = ProvisioningClient(transport)
        with pytest.raises(SessionError) as failure:
            await client.establish_session(security=Sec2Client("not it"))
    assert failure.value.status == constants_pb2.CryptoError
    assert device.session_count == 0


async def test_sec0_device_establishes_a_plaintext_session() -> None:
    device = ProtocommDevice(Sec0Config())
    async with LocalTransport(device) as transport:
        client = ProvisioningClient(transport)
        await client.establish_session(Credentials())
        assert device.session_state(transport.session_id) is SessionState.ESTABLISHED


async def test_http_sets_session_cookie_and_ties_session_to_the_connection(
    sec1_device: ProtocommDevice,
) -> None:
    async with (
        ProtocommHttpServer(sec1_device) as server,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as http,
    ):
        async with http.post(f"{server.url}/proto-ver", data=b"x") as first:
            cookie = first.cookies[SESSION_COOKIE].value
            await first.read()
        async with http.post(f"{server.url}/proto-ver", data=b"x") as second:
            await second.read()
            assert SESSION_COOKIE not in second.cookies  # same connection, same session
        async with http.post(f"{server.url}/prov-session", data=b"") as empty:
            assert empty.status == 400
    assert cookie.isdigit()
    assert 0 <= int(cookie) < 2**32


async def test_duplicate_command1_sent_concurrently_cannot_establish_twice() -> None:
    device = ProtocommDevice(Sec2Config.from_password(SRP_PASSWORD, salt=SRP_SALT))
    transport = LocalTransport(device)
    sent: list[bytes] = []

    async def send(data: bytes) -> bytes:
        sent.append(data)
        if len(sent) == 2:
            # Fire the same Command1 twice at once, as a replaying client would.
            first, second = await asyncio.gather(
                transport.request(PROV_SESSION, data), transport.request(PROV_SESSION, data)
            )
            statuses = {answer(first).sec2.sr1.status, answer(second).sec2.sr1.status}
            assert statuses == {constants_pb2.Success, constants_pb2.InvalidSession}
            return first if answer(first).sec2.sr1.status == constants_pb2.Success else second
        return await transport.request(PROV_SESSION, data)

    await Sec2Client(SRP_PASSWORD).handshake(send)
    assert device.session_state(transport.session_id) is SessionState.NONE
