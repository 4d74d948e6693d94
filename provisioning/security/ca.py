"""The device CA: key storage, certificates for devices, the broker and the bridge.

One ECDSA P-256 CA signs everything the broker trusts or presents:

* device certificates (CN = serial, SAN ``urn:zanuo:device:<serial>``, client-auth
  EKU, ~20 years: a device lives with its certificate);
* the bridge's client certificate (CN = ``bridge``: with
  ``use_identity_as_username`` the CN *is* the MQTT username the ACL grants
  ``zn/#``);
* the broker's TLS server certificate (server-auth EKU only, DNS/IP SANs, short
  validity, reissued by ``zanuo ca server-cert``).

Using one CA keeps a single trust anchor on devices and in the broker. The EKUs
keep the roles apart: OpenSSL refuses a server-auth certificate as a client and
a client-auth certificate as a server. Device serials are upper case
(:data:`~provisioning.security.codes.SERIAL_PATTERN`), so no device can get a
certificate whose CN is ``bridge``.

The CA private key lives only in ``<ca dir>/ca.key.pem`` as encrypted PKCS#8
(mode 0600). Functions that make a key pair write the private key straight to a
file the caller named and return only the certificate. Everything here is
synchronous and CPU-bound: callers on an event loop run batches in an executor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.clock import Clock
from provisioning.security.codes import validate_serial
from provisioning.security.errors import (
    CaAlreadyExists,
    CaNotInitialized,
    CaUnreadable,
    CertificateInvalid,
    CsrInvalid,
    SecurityError,
)

_LOGGER = logging.getLogger(__name__)

CA_KEY_FILE: Final = "ca.key.pem"
CA_CERT_FILE: Final = "ca.crt.pem"
DEVICE_KEY_FILE: Final = "device.key.pem"
DEVICE_CERT_FILE: Final = "device.crt.pem"
DEVICE_CA_FILE: Final = "ca.crt.pem"

BRIDGE_COMMON_NAME: Final = "bridge"
DEVICE_URI_PREFIX: Final = "urn:zanuo:device:"
CA_VALIDITY: Final = dt.timedelta(days=365 * 30 + 8)
DEVICE_VALIDITY: Final = dt.timedelta(days=365 * 20 + 5)
SERVER_VALIDITY: Final = dt.timedelta(days=397)
BRIDGE_VALIDITY: Final = dt.timedelta(days=825)
# Certificates start a little in the past so a device or broker whose clock is
# slightly behind does not reject a certificate issued a second ago.
BACKDATE: Final = dt.timedelta(minutes=5)
MIN_PASSPHRASE_BYTES: Final = 8


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A loaded device CA: its certificate and (unprintable) private key."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = dataclasses.field(repr=False)

    @property
    def subject(self) -> x509.Name:
        """Return the CA's subject name (the issuer of everything it signs)."""
        return self.certificate.subject

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """Return the CA public key."""
        return self.private_key.public_key()


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateDescription:
    """What ``zanuo ca show`` prints: no secrets, only public facts."""

    subject: str
    issuer: str
    serial_number: int
    fingerprint_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceCsr:
    """One row of a batch: the serial the factory claims and the device's CSR (PEM)."""

    serial: str
    csr_pem: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class SignedDevice:
    """The outcome for one batch row: a certificate or the error that refused it."""

    serial: str
    certificate: x509.Certificate | None
    error: SecurityError | None


# --------------------------------------------------------------------------- helpers


def certificate_fingerprint(certificate: x509.Certificate) -> str:
    """Return the SHA-256 fingerprint of the DER certificate as lower-case hex."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """Return the certificate as PEM bytes."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def load_certificate(data: bytes) -> x509.Certificate:
    """Parse a PEM certificate, raising :class:`CertificateInvalid` on garbage."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as err:
        raise CertificateInvalid("not a PEM certificate") from err


def read_certificate(path: Path) -> x509.Certificate:
    """Read a PEM certificate file."""
    return load_certificate(Path(path).read_bytes())


def common_name(certificate: x509.Certificate) -> str | None:
    """Return the subject CN of a certificate, or None when it has none."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        return None
    value = names[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def describe_certificate(certificate: x509.Certificate) -> CertificateDescription:
    """Describe a certificate (subject, fingerprint, validity) without any secret."""
    return CertificateDescription(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial_number=certificate.serial_number,
        fingerprint_sha256=certificate_fingerprint(certificate),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
    )


def describe_ca(directory: Path) -> CertificateDescription:
    """Describe the CA in ``directory`` from its certificate alone (no passphrase needed)."""
    cert_path = Path(directory) / CA_CERT_FILE
    if not cert_path.exists():
        raise CaNotInitialized(directory=str(directory))
    return describe_certificate(read_certificate(cert_path))


def ca_certificate_path(directory: Path) -> Path:
    """Return where the CA certificate lives in a CA directory (the broker's ``cafile``)."""
    return Path(directory) / CA_CERT_FILE


def write_file_atomically(
    path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True
) -> None:
    """Write ``data`` to ``path`` via temp file + rename (+ fsync when ``durable``), owner-only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_public_file(path: Path, data: bytes, *, durable: bool = True) -> None:
    write_file_atomically(path, data, mode=0o644, durable=durable)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, *, durable: bool = True) -> None:
    # Device, server and bridge keys are unencrypted PKCS#8 because Mosquitto,
    # aiomqtt and the simulated device flash must read them without a prompt;
    # the file mode keeps them private.
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_file_atomically(path, pem, durable=durable)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_usage(*, signs_certificates: bool, key_agreement: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


# --------------------------------------------------------------------------- the CA


def init_ca(
    directory: Path,
    passphrase: bytes,
    clock: Clock,
    *,
    common_name: str = "Zanuo Device CA",
    organization: str = "Zanuo",
    exist_ok: bool = False,
) -> CertificateAuthority:
    """Create the device CA in ``directory``; refuse to overwrite one (unless ``exist_ok``)."""
    directory = Path(directory)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    if key_path.exists() or cert_path.exists():
        if exist_ok:
            return load_ca(directory, passphrase)
        raise CaAlreadyExists(directory=str(directory))
    _check_passphrase(passphrase)
    key = _new_key()
    now = clock.now()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True, key_agreement=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    directory.mkdir(parents=True, exist_ok=True)
    # Key first: a crash between the two writes leaves a key without a
    # certificate, which load_ca reports instead of silently making a new CA.
    write_file_atomically(key_path, encrypted)
    _write_public_file(cert_path, certificate_pem(certificate))
    _LOGGER.info(
        "Created device CA %s in %s (fingerprint %s)",
        certificate.subject.rfc4514_string(),
        directory,
        certificate_fingerprint(certificate),
    )
    return CertificateAuthority(certificate=certificate, private_key=key)


def load_ca(directory: Path, passphrase: bytes) -> CertificateAuthority:
    """Load the device CA from ``directory`` with its passphrase."""
    directory = Path(directory)
    key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
    if not key_path.exists() and not cert_path.exists():
        raise CaNotInitialized(directory=str(directory))
    if not key_path.exists() or not cert_path.exists():
        raise CaUnreadable(
            f"the CA directory holds only one of {CA_KEY_FILE} and {CA_CERT_FILE}",
            directory=str(directory),
        )
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        # Deliberately no detail from the exception: it never names the
        # passphrase, but a uniform message is all an operator needs.
        raise CaUnreadable(
            "cannot decrypt the CA key: wrong passphrase or damaged key file",
            directory=str(directory),
        ) from err
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _is_p256(key):
        raise CaUnreadable("the CA key is not an ECDSA P-256 key", directory=str(directory))
    try:
        certificate = read_certificate(cert_path)
    except CertificateInvalid as err:
        raise CaUnreadable("the CA certificate is not readable", directory=str(directory)) from err
    if certificate.public_key() != key.public_key():
        raise CaUnreadable(
            "the CA certificate does not belong to the CA key", directory=str(directory)
        )
    return CertificateAuthority(certificate=certificate, private_key=key)


def _check_passphrase(passphrase: bytes) -> None:
    if not isinstance(passphrase, bytes) or len(passphrase) < MIN_PASSPHRASE_BYTES:
        raise SecurityError(
            f"the CA passphrase must be at least {MIN_PASSPHRASE_BYTES} bytes",
            key="secrets.ca_passphrase",
        )


# --------------------------------------------------------------------------- issuing


def _leaf_builder(
    ca: CertificateAuthority,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    now: dt.datetime,
    validity: dt.timedelta,
    eku: x509.ObjectIdentifier,
    *,
    key_agreement: bool,
) -> x509.CertificateBuilder:
    not_after = min(now + validity, ca.certificate.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # Device keys also receive sealed secrets (ECDH), see sealing.py.
            _key_usage(signs_certificates=False, key_agreement=key_agreement),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False
        )
    )


def issue_device_certificate(
    ca: CertificateAuthority,
    serial: str,
    public_key: ec.EllipticCurvePublicKey,
    clock: Clock,
    *,
    validity: dt.timedelta = DEVICE_VALIDITY,
) -> x509.Certificate:
    """Sign a device certificate (CN = serial, device URI SAN, client auth) for a P-256 key."""
    validate_serial(serial)
    if not _is_p256(public_key):
        raise CsrInvalid("device keys must be ECDSA P-256", serial=serial)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)])
    builder = _leaf_builder(
        ca,
        subject,
        public_key,
        clock.now(),
        validity,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        key_agreement=True,
    ).add_extension(
        x509.SubjectAlternativeName([x509.UniformResourceIdentifier(DEVICE_URI_PREFIX + serial)]),
        critical=False,
    )
    return builder.sign(ca.private_key, hashes.SHA256())


def load_device_csr(csr_pem: bytes, serial: str) -> ec.EllipticCurvePublicKey:
    """Check a device CSR (PEM) and return its public key; raise :class:`CsrInvalid`."""
    validate_serial(serial)
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as err:
        raise CsrInvalid("the CSR is not a PEM certificate request", serial=serial) from err
    try:
        signature_ok = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm, InvalidSignature) as err:
        raise CsrInvalid("the CSR cannot be verified", serial=serial) from err
    if not signature_ok:
        raise CsrInvalid("the CSR signature does not verify", serial=serial)
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not _is_p256(public_key):
        raise CsrInvalid("the CSR key must be ECDSA P-256", serial=serial)
    cn = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cn) != 1 or cn[0].value != serial:
        # A CSR made for another serial means the factory file mixed up rows.
        raise CsrInvalid("the CSR subject CN must equal the device serial", serial=serial)
    return public_key


def sign_device_csr(
    ca: CertificateAuthority,
    csr_pem: bytes,
    serial: str,
    clock: Clock,
    *,
    validity: dt.timedelta = DEVICE_VALIDITY,
) -> x509.Certificate:
    """Verify a device CSR and sign its device certificate."""
    public_key = load_device_csr(csr_pem, serial)
    return issue_device_certificate(ca, serial, public_key, clock, validity=validity)


def sign_device_csrs(
    ca: CertificateAuthority, rows: Iterable[DeviceCsr], clock: Clock
) -> list[SignedDevice]:
    """Sign a batch of CSRs; a bad row yields its error instead of stopping the batch.

    Synchronous and CPU-bound: run it in an executor from async code.
    """
    results: list[SignedDevice] = []
    for row in rows:
        try:
            cert = sign_device_csr(ca, row.csr_pem, row.serial, clock)
        except SecurityError as err:
            results.append(SignedDevice(serial=row.serial, certificate=None, error=err))
        else:
            results.append(SignedDevice(serial=row.serial, certificate=cert, error=None))
    return results


def make_device_csr(serial: str, key_path: Path) -> bytes:
    """Generate a device key into ``key_path`` and return a CSR for it (what a device does)."""
    validate_serial(serial)
    key = _new_key()
    _write_key(key_path, key, durable=False)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def manufacture_device(
    ca: CertificateAuthority, serial: str, directory: Path, clock: Clock
) -> x509.Certificate:
    """Simulate manufacturing: write a device key, certificate and CA cert into ``directory``.

    The folder is the device's "flash": ``device.key.pem`` (0600),
    ``device.crt.pem`` and ``ca.crt.pem``. Only the certificate is returned.
    """
    validate_serial(serial)
    directory = Path(directory)
    key = _new_key()
    certificate = issue_device_certificate(ca, serial, key.public_key(), clock)
    # A simulated device's flash, written 100,000 times by a bulk import:
    # atomic but not fsynced (a crash means re-running the import).
    _write_key(directory / DEVICE_KEY_FILE, key, durable=False)
    _write_public_file(directory / DEVICE_CERT_FILE, certificate_pem(certificate), durable=False)
    _write_public_file(directory / DEVICE_CA_FILE, certificate_pem(ca.certificate), durable=False)
    return certificate


def _issue_service_key_pair(
    ca: CertificateAuthority,
    subject: x509.Name,
    alt_names: Sequence[x509.GeneralName],
    eku: x509.ObjectIdentifier,
    validity: dt.timedelta,
    cert_path: Path,
    key_path: Path,
    clock: Clock,
) -> x509.Certificate:
    key = _new_key()
    certificate = (
        _leaf_builder(
            ca, subject, key.public_key(), clock.now(), validity, eku, key_agreement=False
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(ca.private_key, hashes.SHA256())
    )
    _write_key(Path(key_path), key)
    _write_public_file(Path(cert_path), certificate_pem(certificate))
    return certificate


def issue_server_certificate(
    ca: CertificateAuthority,
    hosts: Sequence[str],
    cert_path: Path,
    key_path: Path,
    clock: Clock,
    *,
    validity: dt.timedelta = SERVER_VALIDITY,
) -> x509.Certificate:
    """Make the broker's TLS server key + certificate for ``hosts`` (DNS names or IPs)."""
    if not hosts:
        raise CertificateInvalid("a server certificate needs at least one host")
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(ch.isspace() for ch in host) or "/" in host:
                raise CertificateInvalid("not a host name or IP address", host=host) from None
            names.append(x509.DNSName(host))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zanuo"),
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0]),
        ]
    )
    certificate = _issue_service_key_pair(
        ca, subject, names, ExtendedKeyUsageOID.SERVER_AUTH, validity, cert_path, key_path, clock
    )
    _LOGGER.info("Issued broker server certificate for %s", ", ".join(hosts))
    return certificate


def issue_bridge_certificate(
    ca: CertificateAuthority,
    cert_path: Path,
    key_path: Path,
    clock: Clock,
    *,
    validity: dt.timedelta = BRIDGE_VALIDITY,
) -> x509.Certificate:
    """Make the bridge's client key + certificate (CN = ``bridge``, the ACL's full-access user)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BRIDGE_COMMON_NAME)])
    certificate = _issue_service_key_pair(
        ca,
        subject,
        [x509.UniformResourceIdentifier("urn:zanuo:bridge")],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        validity,
        cert_path,
        key_path,
        clock,
    )
    _LOGGER.info("Issued bridge client certificate %s", certificate_fingerprint(certificate))
    return certificate


def certificate_needs_renewal(
    cert_path: Path, clock: Clock, *, margin: dt.timedelta = dt.timedelta(days=30)
) -> bool:
    """Return True when the certificate file is missing, unreadable or expires within ``margin``."""
    try:
        certificate = read_certificate(Path(cert_path))
    except (OSError, CertificateInvalid):
        return True
    return clock.now() + margin >= certificate.not_valid_after_utc


def verify_issued_by(ca_certificate: x509.Certificate, certificate: x509.Certificate) -> None:
    """Raise :class:`CertificateInvalid` unless ``certificate`` was signed by the CA."""
    try:
        certificate.verify_directly_issued_by(ca_certificate)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise CertificateInvalid("the certificate was not issued by this CA") from err


def device_serial_of(certificate: x509.Certificate) -> str:
    """Return the serial a device certificate names (its CN), validated."""
    cn = common_name(certificate)
    if cn is None:
        raise CertificateInvalid("the certificate has no single CN")
    return validate_serial(cn)
