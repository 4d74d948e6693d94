"""Random and truncated bytes on every endpoint: no crash on the device, no half-open session.

The device runs in-process (no sockets) on a private event loop so hypothesis
can drive thousands of requests quickly; each property holds one device and
one session across all its examples, like a long-lived hostile client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioning.protocomm.bind import BindRequest
from provisioning.protocomm.device import SessionState
from provisioning.protocomm.endpoints import (
    PROTO_VER,
    PROV_CONFIG,
    PROV_CTRL,
    PROV_SCAN,
    PROV_SESSION,
    ZN_BIND,
)
from provisioning.protocomm.errors import RequestRejected
from provisioning.protocomm.local import LocalTransport
from provisioning.protocomm.proto import (
    session_pb2,
    wifi_config_pb2,
    wifi_ctrl_pb2,
    wifi_scan_pb2,
    zn_bind_pb2,
)
from provisioning.protocomm.security import (
    Channel,
    ClientSecurity,
    Sec1Client,
    Sec1Config,
    Sec2Client,
    Sec2Config,
    SecurityConfig,
)
from provisioning.protocomm.service import ProvisioningDevice
from simulators.wifi_world import AccessPoint, WifiWorld

from .conftest import HOME_BSSID, HOME_PASSWORD, HOME_SSID, POP, SRP_PASSWORD, SRP_SALT

EXAMPLES_PER_ENDPOINT = 2000
MAX_SESSIONS = 3
_T = TypeVar("_T")
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_ENDPOINT,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SEC2 = Sec2Config.from_password(SRP_PASSWORD, salt=SRP_SALT)


class _Handler:
    serial = "ZN-FUZZ-0001"

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.tokens: list[bytes] = []

    def signing_key(self) -> ec.EllipticCurvePrivateKey | None:
        return self._key

    async def accept_bind(self, request: BindRequest) -> None:
        self.tokens.append(request.token)


class Rig:
    """A device, an established client session and a private loop to run them on."""

    def __init__(self, security: SecurityConfig, client: ClientSecurity) -> None:
        self._runner = asyncio.Runner()
        world = WifiWorld(
            [AccessPoint(HOME_SSID, HOME_BSSID, password=HOME_PASSWORD)], join_delay=0, scan_delay=0
        )
        self.device = ProvisioningDevice(
            security, world.station("fuzz"), bind_handler=_Handler(), max_sessions=MAX_SESSIONS
        )
        self._client = client
        self.transport = LocalTransport(self.device.protocomm)
        self.channel: Channel | None = None

    def __enter__(self) -> Self:
        self._runner.__enter__()
        self.run(self.device.__aenter__())
        self.reconnect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.run(self.device.__aexit__(exc_type, exc, tb))
        self._runner.__exit__(exc_type, exc, tb)

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine on the rig's loop."""
        return self._runner.run(coro)

    def reconnect(self) -> None:
        """Open a fresh connection and establish a session on it."""
        self.transport.close()
        self.transport = LocalTransport(self.device.protocomm)

        async def send(data: bytes) -> bytes:
            return await self.transport.request(PROV_SESSION, data)

        self.channel = self.run(self._client.handshake(send))

    @property
    def state(self) -> SessionState:
        """Return the state of the rig's session on the device."""
        return self.device.protocomm.session_state(self.transport.session_id)

    def send_raw(self, endpoint: str, data: bytes) -> bytes | None:
        """Send bytes as they are; return the answer, or None if the device refused."""
        try:
            return self.run(self.device.protocomm.handle(self.transport.session_id, endpoint, data))
        except RequestRejected:
            return None

    def send_encrypted(self, endpoint: str, plaintext: bytes) -> bytes | None:
        """Encrypt with the client's half of the session so the handler sees ``plaintext``."""
        assert self.channel is not None
        answer = self.send_raw(endpoint, self.channel.encrypt(plaintext))
        return None if answer is None else self.channel.decrypt(answer)


def truncations(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Return prefixes of valid messages, from empty to whole."""
    return st.sampled_from(valid).flatmap(lambda m: st.integers(0, len(m)).map(lambda n: m[:n]))


def hostile(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Return random bytes, truncated valid messages, and valid messages with junk appended."""
    return st.one_of(
        st.binary(max_size=600),
        truncations(valid),
        st.tuples(st.sampled_from(valid), st.binary(min_size=1, max_size=40)).map(
            lambda t: t[0] + t[1]
        ),
    )


VALID_REQUESTS: dict[str, list[bytes]] = {
    PROV_CONFIG: [
        wifi_config_pb2.WiFiConfigPayload(
            msg=wifi_config_pb2.TypeCmdSetConfig,
            cmd_set_config=wifi_config_pb2.CmdSetConfig(ssid=HOME_SSID, passphrase=HOME_PASSWORD),
        ).SerializeToString(),
        wifi_config_pb2.WiFiConfigPayload(
            msg=wifi_config_pb2.TypeCmdApplyConfig,
            cmd_apply_config=wifi_config_pb2.CmdApplyConfig(),
        ).SerializeToString(),
        wifi_config_pb2.WiFiConfigPayload(
            msg=wifi_config_pb2.TypeCmdGetStatus, cmd_get_status=wifi_config_pb2.CmdGetStatus()
        ).SerializeToString(),
    ],
    PROV_SCAN: [
        wifi_scan_pb2.WiFiScanPayload(
            msg=wifi_scan_pb2.TypeCmdScanStart,
            cmd_scan_start=wifi_scan_pb2.CmdScanStart(blocking=True),
        ).SerializeToString(),
        wifi_scan_pb2.WiFiScanPayload(
            msg=wifi_scan_pb2.TypeCmdScanResult,
            cmd_scan_result=wifi_scan_pb2.CmdScanResult(start_index=0, count=1),
        ).SerializeToString(),
    ],
    PROV_CTRL: [
        wifi_ctrl_pb2.WiFiCtrlPayload(
            msg=wifi_ctrl_pb2.TypeCmdCtrlReset, cmd_ctrl_reset=wifi_ctrl_pb2.CmdCtrlReset()
        ).SerializeToString(),
    ],
    ZN_BIND: [
        zn_bind_pb2.ZnBindRequest(
            token=b"t" * 32, broker_host="mqtt.example", broker_port=8883
        ).SerializeToString(),
    ],
    PROTO_VER: [b"---"],
}


@pytest.mark.parametrize("endpoint", [PROV_CONFIG, PROV_SCAN, PROV_CTRL, ZN_BIND])
def test_random_and_truncated_requests_on_encrypted_endpoints_never_break_a_sec2_session(
    endpoint: str,
) -> None:
    with Rig(SEC2, Sec2Client(SRP_PASSWORD)) as rig:

        @FUZZ_SETTINGS
        @given(plaintext=hostile(VALID_REQUESTS[endpoint]))
        def check(plaintext: bytes) -> None:
            rig.send_encrypted(endpoint, plaintext)
            assert rig.state is SessionState.ESTABLISHED
            assert rig.device.protocomm.session_count == 1

        check()


def test_random_ciphertext_fails_authentication_without_breaking_the_session() -> None:
    with Rig(SEC2, Sec2Client(SRP_PASSWORD)) as rig:

        @FUZZ_SETTINGS
        @given(ciphertext=st.binary(max_size=300), endpoint=st.sampled_from([PROV_CONFIG, ZN_BIND]))
        def check(ciphertext: bytes, endpoint: str) -> None:
            assert rig.send_raw(endpoint, ciphertext) is None
            assert rig.state is SessionState.ESTABLISHED

        check()


def test_random_bytes_on_sec1_encrypted_endpoints_keep_the_stream_in_step() -> None:
    with Rig(Sec1Config(pop=POP), Sec1Client(POP)) as rig:

        @FUZZ_SETTINGS
        @given(plaintext=hostile(VALID_REQUESTS[PROV_CONFIG]))
        def check(plaintext: bytes) -> None:
            rig.send_encrypted(PROV_CONFIG, plaintext)
            status = rig.send_encrypted(PROV_CONFIG, VALID_REQUESTS[PROV_CONFIG][2])
            assert status is not None  # the keystream is still in step: get-status decodes
            wifi_config_pb2.WiFiConfigPayload.FromString(status)
            assert rig.state is SessionState.ESTABLISHED

        check()


def test_random_bytes_on_proto_ver_always_get_the_version_json() -> None:
    with Rig(SEC2, Sec2Client(SRP_PASSWORD)) as rig:

        @FUZZ_SETTINGS
        @given(body=st.binary(max_size=600))
        def check(body: bytes) -> None:
            answer = rig.send_raw(PROTO_VER, body)
            if not body:
                assert answer is None  # HTTP body length must be 1..4096
                return
            assert answer is not None
            assert json.loads(answer)["prov"]["sec_ver"] == 2
            assert rig.state is SessionState.ESTABLISHED

        check()


def _handshake_messages(security: ClientSecurity, config: SecurityConfig) -> list[bytes]:
    """Record the client's handshake messages of one real session."""
    with Rig(config, security) as rig:
        recorded: list[bytes] = []
        rig.transport.close()
        rig.transport = LocalTransport(rig.device.protocomm)

        async def send(data: bytes) -> bytes:
            recorded.append(data)
            return await rig.transport.request(PROV_SESSION, data)

        rig.run(security.handshake(send))
        return recorded


def _assert_not_half_open(rig: Rig, answer: bytes | None) -> None:
    assert rig.device.protocomm.session_count <= MAX_SESSIONS
    if rig.state is SessionState.HANDSHAKING:
        # Only a well-formed Command0 may open a handshake, and it must have succeeded.
        assert answer is not None
        reply = session_pb2.SessionData.FromString(answer)
        payload = reply.sec1 if reply.WhichOneof("proto") == "sec1" else reply.sec2
        assert payload.WhichOneof("payload") == "sr0"
        assert payload.sr0.status == 0


@pytest.mark.parametrize("scheme", ["sec1", "sec2"])
def test_random_and_truncated_handshake_messages_never_leave_a_session_half_open(
    scheme: str,
) -> None:
    config: SecurityConfig = Sec1Config(pop=POP) if scheme == "sec1" else SEC2
    client: ClientSecurity = Sec1Client(POP) if scheme == "sec1" else Sec2Client(SRP_PASSWORD)
    valid = _handshake_messages(client, config)
    # Every well-formed sec2 Command0 costs a full SRP exchange (~15 ms), so sec2
    # gets fewer examples to keep the suite quick.
    examples = EXAMPLES_PER_ENDPOINT if scheme == "sec1" else EXAMPLES_PER_ENDPOINT // 4
    with Rig(config, client) as rig:

        @settings(FUZZ_SETTINGS, max_examples=examples)
        @given(message=hostile(valid), start_half_open=st.booleans())
        def check(message: bytes, start_half_open: bool) -> None:
            if start_half_open:
                rig.send_raw(PROV_SESSION, valid[0])
            answer = rig.send_raw(PROV_SESSION, message)
            _assert_not_half_open(rig, answer)
            if rig.state is SessionState.NONE:
                # Handshake errors are answered with a status; only an empty body,
                # which no transport can carry, is refused outright.
                assert answer is not None or not message

        check()
        # After all that abuse the device still serves a clean session.
        rig.reconnect()
        assert rig.state is SessionState.ESTABLISHED
