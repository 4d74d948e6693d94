"""SRP-6a as protocomm security 2 uses it: RFC 5054 3072-bit group, g = 5, SHA-512.

Byte-exact with Espressif's Python client: the salt, ``B`` and the inner digest
H(I ‖ ":" ‖ p) pass through an integer on their way into x and M, so leading
zero bytes are dropped there; only k and u hash padded values. The functions
here are pure and CPU-bound (3072-bit exponentiations): callers on an event
loop run them in an executor.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from provisioning.protocomm.errors import CryptoFailure

N_HEX = (
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64"
    "ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D226"
    "1AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"
)
N = int(N_HEX, 16)
G = 5
N_LEN = (N.bit_length() + 7) // 8  # 384 bytes
SALT_LEN = 16
# Espressif's client and device both draw 32-byte private ephemerals.
EPHEMERAL_LEN = 32


def int_to_bytes(value: int) -> bytes:
    """Encode a non-negative integer big-endian with no leading zero bytes."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def pad(value: int) -> bytes:
    """Encode an integer big-endian, left-padded with zeros to the length of N."""
    return value.to_bytes(N_LEN, "big")


def sha512(*parts: bytes) -> bytes:
    """Return SHA-512 over the concatenation of ``parts``."""
    digest = hashlib.sha512()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _digest_int(*parts: bytes) -> int:
    return int.from_bytes(sha512(*parts), "big")


K_MULTIPLIER = _digest_int(int_to_bytes(N), pad(G))
_HN_XOR_HG = bytes(a ^ b for a, b in zip(sha512(int_to_bytes(N)), sha512(pad(G)), strict=True))


def compute_x(salt: bytes, username: bytes, password: bytes) -> int:
    """Return x = H(s ‖ H(I ‖ ":" ‖ p)), leading zeros dropped as Espressif's client does."""
    inner = sha512(username, b":", password)
    return _digest_int(salt.lstrip(b"\x00"), inner.lstrip(b"\x00"))


def compute_verifier(salt: bytes, username: bytes, password: bytes) -> bytes:
    """Return the verifier v = g^x mod N as minimal big-endian bytes."""
    return int_to_bytes(pow(G, compute_x(salt, username, password), N))


def compute_u(a_pub: int, b_pub: int) -> int:
    """Return the scrambler u = H(PAD(A) ‖ PAD(B))."""
    return _digest_int(pad(a_pub), pad(b_pub))


def compute_m(username: bytes, salt: bytes, a_pub: int, b_pub: int, key: bytes) -> bytes:
    """Return the client proof M = H((H(N) xor H(PAD(g))) ‖ H(I) ‖ s ‖ A ‖ B ‖ K)."""
    return sha512(
        _HN_XOR_HG,
        sha512(username),
        salt.lstrip(b"\x00"),
        int_to_bytes(a_pub),
        int_to_bytes(b_pub),
        key,
    )


def compute_h_amk(a_pub: int, m: bytes, key: bytes) -> bytes:
    """Return the device proof H_AMK = H(A ‖ M ‖ K)."""
    return sha512(int_to_bytes(a_pub), m, key)


@dataclass(frozen=True, slots=True)
class ServerChallenge:
    """The device's answer to A: its public B and everything needed to check M."""

    b_pub: bytes
    expected_m: bytes
    h_amk: bytes
    key: bytes


def server_challenge(
    salt: bytes, verifier: bytes, username: bytes, a_pub_bytes: bytes, b_priv: int | None = None
) -> ServerChallenge:
    """Compute B, the session key K and both proofs for a client's A (device side)."""
    a_pub = int.from_bytes(a_pub_bytes, "big")
    if a_pub % N == 0:
        raise CryptoFailure("SRP: A mod N is zero")
    v = int.from_bytes(verifier, "big")
    b = b_priv if b_priv is not None else int.from_bytes(secrets.token_bytes(EPHEMERAL_LEN), "big")
    b_pub = (K_MULTIPLIER * v + pow(G, b, N)) % N
    u = compute_u(a_pub, b_pub)
    if u == 0:
        raise CryptoFailure("SRP: u is zero")
    secret = pow(a_pub * pow(v, u, N), b, N)
    key = sha512(int_to_bytes(secret))
    m = compute_m(username, salt, a_pub, b_pub, key)
    return ServerChallenge(int_to_bytes(b_pub), m, compute_h_amk(a_pub, m, key), key)


def server_check_proof(challenge: ServerChallenge, client_m: bytes) -> bool:
    """Return whether the client's M matches in constant time."""
    return hmac.compare_digest(challenge.expected_m, client_m)


@dataclass(frozen=True, slots=True)
class ClientEphemeral:
    """The client's private a and public A."""

    a_priv: int
    a_pub: bytes


def client_ephemeral(a_priv: int | None = None) -> ClientEphemeral:
    """Draw a (or take a fixed one) and return A = g^a mod N."""
    a = a_priv if a_priv is not None else int.from_bytes(secrets.token_bytes(EPHEMERAL_LEN), "big")
    return ClientEphemeral(a, int_to_bytes(pow(G, a, N)))


@dataclass(frozen=True, slots=True)
class ClientProof:
    """The client's proof M, the expected device proof and the session key."""

    m: bytes
    expected_h_amk: bytes
    key: bytes


def client_proof(
    ephemeral: ClientEphemeral, username: bytes, password: bytes, salt: bytes, b_pub_bytes: bytes
) -> ClientProof:
    """Process the device's salt and B: return M, the expected H_AMK and K (client side)."""
    b_pub = int.from_bytes(b_pub_bytes, "big")
    if b_pub % N == 0:
        raise CryptoFailure("SRP: B mod N is zero")
    a_pub = int.from_bytes(ephemeral.a_pub, "big")
    u = compute_u(a_pub, b_pub)
    if u == 0:
        raise CryptoFailure("SRP: u is zero")
    x = compute_x(salt, username, password)
    base = (b_pub - K_MULTIPLIER * pow(G, x, N)) % N
    secret = pow(base, ephemeral.a_priv + u * x, N)
    key = sha512(int_to_bytes(secret))
    m = compute_m(username, salt, a_pub, b_pub, key)
    return ClientProof(m, compute_h_amk(a_pub, m, key), key)
