"""Protocomm security schemes 0, 1 and 2: session channels and both handshake sides.

A *channel* encrypts and decrypts the bytes of an established session. The
device-side handshakes are small state machines fed one ``SessionData`` at a
time; the client-side handshakes drive the whole exchange through a ``send``
callable. CPU-heavy steps (SRP exponentiations, X25519) are plain functions so
callers can run them in an executor.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.message import DecodeError

from provisioning.protocomm import srp6a
from provisioning.protocomm.errors import (
    CryptoFailure,
    HandshakeFailed,
    ProtocolError,
    SessionError,
)
from provisioning.protocomm.proto import constants_pb2, sec0_pb2, sec1_pb2, sec2_pb2, session_pb2

X25519_KEY_LEN = 32
SEC1_RANDOM_LEN = 16
SEC2_NONCE_LEN = 12
SEC2_DEFAULT_USERNAME = "wifiprov"
# A 3072-bit A is at most 384 bytes; usernames are short labels.
_MAX_SRP_PUBLIC_LEN = srp6a.N_LEN
_MAX_USERNAME_LEN = 64


class Channel(Protocol):
    """The cipher of an established session (one per session, stateful)."""

    def encrypt(self, data: bytes) -> bytes:
        """Encrypt one message, advancing the channel state."""
        ...

    def decrypt(self, data: bytes) -> bytes:
        """Decrypt one message, advancing the channel state; raise ``CryptoFailure`` if forged."""
        ...


class PlainChannel:
    """Security 0: bytes pass through unchanged."""

    def encrypt(self, data: bytes) -> bytes:
        """Return ``data`` unchanged."""
        return data

    def decrypt(self, data: bytes) -> bytes:
        """Return ``data`` unchanged."""
        return data


class CtrChannel:
    """Security 1: one AES-256-CTR keystream shared by both directions, never restarted."""

    def __init__(self, key: bytes, counter_block: bytes) -> None:
        self._stream = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()

    def encrypt(self, data: bytes) -> bytes:
        """XOR ``data`` with the next bytes of the shared keystream."""
        return self._stream.update(data)

    def decrypt(self, data: bytes) -> bytes:
        """XOR ``data`` with the next bytes of the shared keystream (CTR is symmetric)."""
        return self._stream.update(data)


class GcmChannel:
    """Security 2: AES-256-GCM with K[0:32]; patch 1 counts in the nonce's last 4 bytes."""

    def __init__(self, session_key: bytes, nonce: bytes, patch: int) -> None:
        if len(nonce) != SEC2_NONCE_LEN:
            raise CryptoFailure("sec2 nonce must be 12 bytes")
        self._aead = AESGCM(session_key[:32])
        self._prefix = nonce[:8]
        self._counter = int.from_bytes(nonce[8:], "big")
        self._patch = patch

    def _take_nonce(self) -> bytes:
        nonce = self._prefix + self._counter.to_bytes(4, "big")
        if self._patch >= 1:
            self._counter = (self._counter + 1) & 0xFFFFFFFF
        return nonce

    def encrypt(self, data: bytes) -> bytes:
        """Seal one message under the current nonce, then advance the counter (patch 1)."""
        return self._aead.encrypt(self._take_nonce(), data, None)

    def decrypt(self, data: bytes) -> bytes:
        """Open one message; the counter advances even on failure so a nonce is never reused."""
        nonce = self._take_nonce()
        try:
            return self._aead.decrypt(nonce, data, None)
        except InvalidTag as err:
            raise CryptoFailure("sec2 message failed authentication") from err


def _x25519_public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sec1_session_key(shared: bytes, pop: bytes | None) -> bytes:
    """Return the sec1 AES key: the X25519 secret, XORed with SHA-256(PoP) when a PoP is set."""
    if not pop:
        return shared
    digest = hashlib.sha256(pop).digest()
    return bytes(a ^ b for a, b in zip(shared, digest, strict=True))


def _x25519_shared(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as err:  # a low-order point yields an all-zero secret
        raise CryptoFailure("X25519 key agreement failed") from err


_T = TypeVar("_T")


class Offload(Protocol):
    """Run a pure, picklable function away from the event loop and await its result."""

    def __call__(self, fn: Callable[..., _T], /, *args: Any) -> Awaitable[_T]:
        """Schedule ``fn(*args)``."""
        ...


async def run_inline(fn: Callable[..., _T], /, *args: Any) -> _T:
    """An :class:`Offload` that runs on the caller's thread (tests and known-answer checks)."""
    return fn(*args)


def executor_offload(executor: Executor | None) -> Offload:
    """Return an :class:`Offload` onto ``executor`` (None: the loop's default thread pool)."""

    def offload(fn: Callable[..., _T], /, *args: Any) -> Awaitable[_T]:
        return asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    return offload


def sec1_device_exchange(client_public: bytes) -> tuple[bytes, bytes]:
    """Draw the device's X25519 key and agree with the client's: return (public, secret)."""
    private = X25519PrivateKey.generate()
    return _x25519_public_bytes(private), _x25519_shared(private, client_public)


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True, slots=True)
class Sec0Config:
    """Device security 0: no encryption (``no_sec``)."""

    version: int = 0
    patch: int = 0


@dataclass(frozen=True, slots=True)
class Sec1Config:
    """Device security 1: X25519 + AES-CTR, with a proof of possession unless ``pop`` is None."""

    pop: bytes | None = None
    version: int = 1
    patch: int = 0


@dataclass(frozen=True, slots=True)
class Sec2Config:
    """Device security 2: the stored SRP salt and verifier only; patch 1 unless asked otherwise."""

    salt: bytes
    verifier: bytes
    patch: int = 1
    version: int = 2

    @classmethod
    def from_password(
        cls,
        password: str | bytes,
        *,
        username: str | bytes = SEC2_DEFAULT_USERNAME,
        salt: bytes | None = None,
        patch: int = 1,
    ) -> Sec2Config:
        """Derive salt + verifier at manufacturing time; the password is not kept."""
        salt = salt if salt is not None else os.urandom(srp6a.SALT_LEN)
        verifier = srp6a.compute_verifier(salt, _as_bytes(username), _as_bytes(password))
        return cls(salt=salt, verifier=verifier, patch=patch)


SecurityConfig = Sec0Config | Sec1Config | Sec2Config


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


# --------------------------------------------------------------------------- device side


class HandshakeOutcome(enum.Enum):
    """What a handshake step did to the session."""

    CONTINUE = "continue"
    ESTABLISHED = "established"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class HandshakeStep:
    """The response to one ``SessionData`` and the outcome of the step."""

    response: session_pb2.SessionData
    outcome: HandshakeOutcome
    channel: Channel | None = None


class DeviceHandshake(Protocol):
    """One in-progress handshake on the device; heavy maths goes through ``offload``."""

    async def step(self, request: session_pb2.SessionData, offload: Offload) -> HandshakeStep:
        """Answer one handshake message."""
        ...


# (scheme, phase) -> (SessionData field, response type, response field)
_RESPONSE_SLOTS: dict[tuple[int, int], tuple[str, int, str]] = {
    (0, 0): ("sec0", sec0_pb2.S0_Session_Response, "sr"),
    (0, 1): ("sec0", sec0_pb2.S0_Session_Response, "sr"),
    (1, 0): ("sec1", sec1_pb2.Session_Response0, "sr0"),
    (1, 1): ("sec1", sec1_pb2.Session_Response1, "sr1"),
    (2, 0): ("sec2", sec2_pb2.S2Session_Response0, "sr0"),
    (2, 1): ("sec2", sec2_pb2.S2Session_Response1, "sr1"),
}


def failure_response(config: SecurityConfig, phase: int, status: int) -> session_pb2.SessionData:
    """Build the device's answer carrying an error ``status`` for handshake ``phase`` 0 or 1."""
    proto, msg_type, field = _RESPONSE_SLOTS[(config.version, phase)]
    data = session_pb2.SessionData(sec_ver=config.version)  # type: ignore[arg-type]  # int is the wire enum
    payload = getattr(data, proto)
    payload.msg = msg_type
    getattr(payload, field).status = status
    return data


def command_phase(config: SecurityConfig, request: session_pb2.SessionData) -> int | None:
    """Return 0 or 1 for a well-formed command of the device's scheme, else None."""
    match config:
        case Sec0Config() if request.WhichOneof("proto") == "sec0":
            ok = request.sec0.msg == sec0_pb2.S0_Session_Command
            return 0 if ok and request.sec0.WhichOneof("payload") == "sc" else None
        case Sec1Config() if request.WhichOneof("proto") == "sec1":
            kind = request.sec1.WhichOneof("payload")
            msg = request.sec1.msg
            if kind == "sc0" and msg == sec1_pb2.Session_Command0:
                return 0
            return 1 if kind == "sc1" and msg == sec1_pb2.Session_Command1 else None
        case Sec2Config() if request.WhichOneof("proto") == "sec2":
            kind2 = request.sec2.WhichOneof("payload")
            msg2 = request.sec2.msg
            if kind2 == "sc0" and msg2 == sec2_pb2.S2Session_Command0:
                return 0
            return 1 if kind2 == "sc1" and msg2 == sec2_pb2.S2Session_Command1 else None
    return None


class Sec0DeviceHandshake:
    """Security 0: one command, one response, then a plaintext session."""

    def __init__(self, config: Sec0Config) -> None:
        self._config = config

    async def step(self, request: session_pb2.SessionData, offload: Offload) -> HandshakeStep:
        """Accept the single sec0 command."""
        response = failure_response(self._config, 0, constants_pb2.Success)
        return HandshakeStep(response, HandshakeOutcome.ESTABLISHED, PlainChannel())


class Sec1DeviceHandshake:
    """Security 1 on the device: Command0 then Command1."""

    def __init__(self, config: Sec1Config) -> None:
        self._config = config
        self._client_public: bytes | None = None
        self._device_public = b""
        self._channel: CtrChannel | None = None

    async def step(self, request: session_pb2.SessionData, offload: Offload) -> HandshakeStep:
        """Answer Command0 (key exchange) or Command1 (verify), in that order only."""
        phase = command_phase(self._config, request)
        if phase == 0 and self._channel is None:
            return await self._command0(request.sec1.sc0.client_pubkey, offload)
        if phase == 1 and self._channel is not None:
            return self._command1(request.sec1.sc1.client_verify_data)
        return self._fail(phase or 0, constants_pb2.InvalidSession)

    def _fail(self, phase: int, status: int) -> HandshakeStep:
        return HandshakeStep(failure_response(self._config, phase, status), HandshakeOutcome.FAILED)

    async def _command0(self, client_public: bytes, offload: Offload) -> HandshakeStep:
        if len(client_public) != X25519_KEY_LEN:
            return self._fail(0, constants_pb2.InvalidArgument)
        try:
            device_public, shared = await offload(sec1_device_exchange, client_public)
        except CryptoFailure:
            return self._fail(0, constants_pb2.CryptoError)
        device_random = secrets.token_bytes(SEC1_RANDOM_LEN)
        self._client_public = client_public
        self._device_public = device_public
        self._channel = CtrChannel(sec1_session_key(shared, self._config.pop), device_random)
        response = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
        response.sec1.msg = sec1_pb2.Session_Response0
        response.sec1.sr0.status = constants_pb2.Success
        response.sec1.sr0.device_pubkey = self._device_public
        response.sec1.sr0.device_random = device_random
        return HandshakeStep(response, HandshakeOutcome.CONTINUE)

    def _command1(self, client_verify: bytes) -> HandshakeStep:
        assert self._channel is not None
        assert self._client_public is not None
        if len(client_verify) != X25519_KEY_LEN:
            return self._fail(1, constants_pb2.InvalidArgument)
        if not hmac.compare_digest(self._channel.decrypt(client_verify), self._device_public):
            return self._fail(1, constants_pb2.CryptoError)
        response = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
        response.sec1.msg = sec1_pb2.Session_Response1
        response.sec1.sr1.status = constants_pb2.Success
        response.sec1.sr1.device_verify_data = self._channel.encrypt(self._client_public)
        return HandshakeStep(response, HandshakeOutcome.ESTABLISHED, self._channel)


class Sec2DeviceHandshake:
    """Security 2 on the device: Command0 (A → B, salt) then Command1 (M → H_AMK, nonce)."""

    def __init__(self, config: Sec2Config) -> None:
        self._config = config
        self._challenge: srp6a.ServerChallenge | None = None

    async def step(self, request: session_pb2.SessionData, offload: Offload) -> HandshakeStep:
        """Answer Command0 or Command1, in that order only."""
        phase = command_phase(self._config, request)
        if phase == 0 and self._challenge is None:
            cmd0 = request.sec2.sc0
            return await self._command0(cmd0.client_username, cmd0.client_pubkey, offload)
        if phase == 1 and self._challenge is not None:
            return self._command1(request.sec2.sc1.client_proof)
        return self._fail(phase or 0, constants_pb2.InvalidSession)

    def _fail(self, phase: int, status: int) -> HandshakeStep:
        return HandshakeStep(failure_response(self._config, phase, status), HandshakeOutcome.FAILED)

    async def _command0(self, username: bytes, a_pub: bytes, offload: Offload) -> HandshakeStep:
        if not a_pub or len(a_pub) > _MAX_SRP_PUBLIC_LEN or len(username) > _MAX_USERNAME_LEN:
            return self._fail(0, constants_pb2.InvalidArgument)
        try:
            # Three 3072-bit exponentiations (~25 ms) that hold the GIL: offload them.
            challenge = await offload(
                srp6a.server_challenge, self._config.salt, self._config.verifier, username, a_pub
            )
        except CryptoFailure:
            return self._fail(0, constants_pb2.CryptoError)
        self._challenge = challenge
        response = session_pb2.SessionData(sec_ver=session_pb2.SecScheme2)
        response.sec2.msg = sec2_pb2.S2Session_Response0
        response.sec2.sr0.status = constants_pb2.Success
        response.sec2.sr0.device_pubkey = challenge.b_pub
        response.sec2.sr0.device_salt = self._config.salt
        return HandshakeStep(response, HandshakeOutcome.CONTINUE)

    def _command1(self, client_m: bytes) -> HandshakeStep:
        assert self._challenge is not None
        if not srp6a.server_check_proof(self._challenge, client_m):
            return self._fail(1, constants_pb2.CryptoError)
        nonce = secrets.token_bytes(SEC2_NONCE_LEN)
        response = session_pb2.SessionData(sec_ver=session_pb2.SecScheme2)
        response.sec2.msg = sec2_pb2.S2Session_Response1
        response.sec2.sr1.status = constants_pb2.Success
        response.sec2.sr1.device_proof = self._challenge.h_amk
        response.sec2.sr1.device_nonce = nonce
        channel = GcmChannel(self._challenge.key, nonce, self._config.patch)
        return HandshakeStep(response, HandshakeOutcome.ESTABLISHED, channel)


def new_device_handshake(config: SecurityConfig) -> DeviceHandshake:
    """Start a device-side handshake for the configured scheme."""
    match config:
        case Sec0Config():
            return Sec0DeviceHandshake(config)
        case Sec1Config():
            return Sec1DeviceHandshake(config)
        case Sec2Config():
            return Sec2DeviceHandshake(config)


# --------------------------------------------------------------------------- client side

SendFn = Callable[[bytes], Awaitable[bytes]]


def _parse_session(data: bytes) -> session_pb2.SessionData:
    message = session_pb2.SessionData()
    try:
        message.ParseFromString(data)
    except DecodeError as err:
        raise ProtocolError("device sent an undecodable SessionData") from err
    return message


def _check_status(status: int, step: str) -> None:
    if status == constants_pb2.Success:
        return
    name = constants_pb2.Status.Name(status) if status in constants_pb2.Status.values() else "?"
    if status == constants_pb2.CryptoError:
        raise HandshakeFailed(f"{step}: device reported {name}", status)
    raise SessionError(f"{step}: device reported {name}", status)


class ClientSecurity(Protocol):
    """A client-side security scheme: run the handshake and return the session channel."""

    version: int

    async def handshake(self, send: SendFn) -> Channel:
        """Run the handshake over ``send`` (one prov-session round trip per call)."""
        ...


class Sec0Client:
    """Client security 0."""

    version = 0

    async def handshake(self, send: SendFn) -> Channel:
        """Send the sec0 command and expect success."""
        request = session_pb2.SessionData(sec_ver=session_pb2.SecScheme0)
        request.sec0.msg = sec0_pb2.S0_Session_Command
        request.sec0.sc.SetInParent()
        response = _parse_session(await send(request.SerializeToString()))
        if response.WhichOneof("proto") != "sec0":
            raise ProtocolError("device did not answer with sec0")
        _check_status(response.sec0.sr.status, "sec0")
        return PlainChannel()


class Sec1Client:
    """Client security 1 with an optional proof of possession."""

    version = 1

    def __init__(self, pop: str | bytes | None = None) -> None:
        self._pop = _as_bytes(pop) if pop else None

    async def handshake(self, send: SendFn) -> Channel:
        """Exchange X25519 keys, then prove the key (and PoP) by encrypting the device key."""
        loop = asyncio.get_running_loop()
        private = await loop.run_in_executor(None, X25519PrivateKey.generate)
        client_public = _x25519_public_bytes(private)
        request = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
        request.sec1.msg = sec1_pb2.Session_Command0
        request.sec1.sc0.client_pubkey = client_public
        response = _parse_session(await send(request.SerializeToString()))
        if response.WhichOneof("proto") != "sec1" or response.sec1.WhichOneof("payload") != "sr0":
            raise ProtocolError("device did not answer with sec1 Response0")
        _check_status(response.sec1.sr0.status, "sec1 command0")
        device_public = response.sec1.sr0.device_pubkey
        device_random = response.sec1.sr0.device_random
        if len(device_public) != X25519_KEY_LEN or len(device_random) != SEC1_RANDOM_LEN:
            raise ProtocolError("sec1 Response0 has the wrong key or random length")
        shared = await loop.run_in_executor(None, _x25519_shared, private, device_public)
        channel = CtrChannel(sec1_session_key(shared, self._pop), device_random)
        request = session_pb2.SessionData(sec_ver=session_pb2.SecScheme1)
        request.sec1.msg = sec1_pb2.Session_Command1
        request.sec1.sc1.client_verify_data = channel.encrypt(device_public)
        response = _parse_session(await send(request.SerializeToString()))
        if response.WhichOneof("proto") != "sec1" or response.sec1.WhichOneof("payload") != "sr1":
            raise ProtocolError("device did not answer with sec1 Response1")
        _check_status(response.sec1.sr1.status, "sec1 command1")
        if not hmac.compare_digest(
            channel.decrypt(response.sec1.sr1.device_verify_data), client_public
        ):
            raise HandshakeFailed(
                "device could not prove the session key", constants_pb2.CryptoError
            )
        return channel


class Sec2Client:
    """Client security 2 (SRP-6a); patch 1 unless an old device asks for patch 0."""

    version = 2

    def __init__(
        self,
        password: str | bytes,
        *,
        username: str | bytes = SEC2_DEFAULT_USERNAME,
        patch: int = 1,
        executor: Executor | None = None,
    ) -> None:
        self._username = _as_bytes(username)
        self._password = _as_bytes(password)
        self._patch = patch
        self._offload = executor_offload(executor)

    async def handshake(self, send: SendFn) -> Channel:
        """Run SRP-6a: send A, answer the salt and B with M, check H_AMK."""
        ephemeral = await self._offload(srp6a.client_ephemeral)
        request = session_pb2.SessionData(sec_ver=session_pb2.SecScheme2)
        request.sec2.msg = sec2_pb2.S2Session_Command0
        request.sec2.sc0.client_username = self._username
        request.sec2.sc0.client_pubkey = ephemeral.a_pub
        response = _parse_session(await send(request.SerializeToString()))
        if response.WhichOneof("proto") != "sec2" or response.sec2.WhichOneof("payload") != "sr0":
            raise ProtocolError("device did not answer with sec2 Response0")
        _check_status(response.sec2.sr0.status, "sec2 command0")
        proof = await self._offload(
            srp6a.client_proof,
            ephemeral,
            self._username,
            self._password,
            response.sec2.sr0.device_salt,
            response.sec2.sr0.device_pubkey,
        )
        request = session_pb2.SessionData(sec_ver=session_pb2.SecScheme2)
        request.sec2.msg = sec2_pb2.S2Session_Command1
        request.sec2.sc1.client_proof = proof.m
        response = _parse_session(await send(request.SerializeToString()))
        if response.WhichOneof("proto") != "sec2" or response.sec2.WhichOneof("payload") != "sr1":
            raise ProtocolError("device did not answer with sec2 Response1")
        _check_status(response.sec2.sr1.status, "sec2 command1")
        if not hmac.compare_digest(response.sec2.sr1.device_proof, proof.expected_h_amk):
            raise HandshakeFailed("device proof H_AMK does not match", constants_pb2.CryptoError)
        return GcmChannel(proof.key, response.sec2.sr1.device_nonce, self._patch)
