"""The device CA: storage of its key, and the certificates it issues."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.clock import FrozenClock, SystemClock
from provisioning.security import ca as device_ca
from provisioning.security.errors import (
    CaAlreadyExists,
    CaNotInitialized,
    CaUnreadable,
    CsrInvalid,
    SerialInvalid,
)
from tests.fixtures.mosquitto import PKI_PASSPHRASE, LocalPki

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC)


def _openssl_verify(
    ca_file: Path, cert_file: Path, purpose: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-purpose", purpose, "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        check=False,
    )


def _csr(serial: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def test_init_ca_refuses_to_overwrite_an_existing_ca(tmp_path: Path) -> None:
    first = device_ca.init_ca(tmp_path, PKI_PASSPHRASE, FrozenClock(NOW))
    with pytest.raises(CaAlreadyExists):
        device_ca.init_ca(tmp_path, PKI_PASSPHRASE, FrozenClock(NOW))
    again = device_ca.init_ca(tmp_path, PKI_PASSPHRASE, FrozenClock(NOW), exist_ok=True)
    assert again.certificate == first.certificate
    assert device_ca.load_ca(tmp_path, PKI_PASSPHRASE).certificate == first.certificate


def test_ca_key_is_stored_encrypted_and_owner_only(tmp_path: Path) -> None:
    device_ca.init_ca(tmp_path, PKI_PASSPHRASE, FrozenClock(NOW))
    key_file = tmp_path / device_ca.CA_KEY_FILE
    stored = key_file.read_bytes()
    assert stored.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert PKI_PASSPHRASE not in stored
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(stored, password=None)


def test_wrong_passphrase_is_reported_without_echoing_it(tmp_path: Path) -> None:
    device_ca.init_ca(tmp_path, PKI_PASSPHRASE, FrozenClock(NOW))
    with pytest.raises(CaUnreadable, match="passphrase") as caught:
        device_ca.load_ca(tmp_path, b"not-the-passphrase")
    assert "not-the-passphrase" not in str(caught.value.to_dict())


def test_missing_ca_tells_the_operator_to_run_ca_init(tmp_path: Path) -> None:
    with pytest.raises(CaNotInitialized, match="ca init"):
        device_ca.load_ca(tmp_path / "nothing", PKI_PASSPHRASE)
    with pytest.raises(CaNotInitialized):
        device_ca.describe_ca(tmp_path / "nothing")


def test_ca_show_describes_subject_fingerprint_and_validity(tmp_path: Path) -> None:
    authority = device_ca.init_ca(tmp_path, PKI_PASSPHRASE, FrozenClock(NOW))
    shown = device_ca.describe_ca(tmp_path)
    assert shown.subject == "CN=Zanuo Device CA,O=Zanuo"
    assert shown.fingerprint_sha256 == authority.certificate.fingerprint(hashes.SHA256()).hex()
    assert len(shown.fingerprint_sha256) == 64
    assert shown.not_before <= NOW < shown.not_after
    assert shown.not_after - NOW > dt.timedelta(days=365 * 25)


def test_device_certificate_verifies_with_openssl_as_a_tls_client(device_pki: LocalPki) -> None:
    device = device_pki.mint_device("ZC1-0001")
    result = _openssl_verify(device_pki.ca_file, device.cert_file, "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")
    # Its EKU is client auth only: it cannot pose as the broker.
    assert _openssl_verify(device_pki.ca_file, device.cert_file, "sslserver").returncode != 0


def test_device_certificate_names_the_device_for_its_lifetime(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    cert = device_ca.manufacture_device(authority, "ZC1-0001", tmp_path / "flash", clock)
    assert device_ca.device_serial_of(cert) == "ZC1-0001"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:zanuo:device:ZC1-0001"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc - NOW > dt.timedelta(days=365 * 19)
    assert cert.not_valid_after_utc <= authority.certificate.not_valid_after_utc
    device_ca.verify_issued_by(authority.certificate, cert)


def test_manufactured_flash_holds_private_key_certificate_and_ca(tmp_path: Path) -> None:
    clock = SystemClock()
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    cert = device_ca.manufacture_device(authority, "ZC1-0002", tmp_path / "flash", clock)
    flash = tmp_path / "flash"
    key = serialization.load_pem_private_key(
        (flash / device_ca.DEVICE_KEY_FILE).read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == cert.public_key()
    assert stat.S_IMODE((flash / device_ca.DEVICE_KEY_FILE).stat().st_mode) == 0o600
    assert device_ca.read_certificate(flash / device_ca.DEVICE_CERT_FILE) == cert
    assert device_ca.read_certificate(flash / device_ca.DEVICE_CA_FILE) == authority.certificate


def test_device_csr_is_signed_with_the_key_the_device_kept(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    csr = device_ca.make_device_csr("ZC1-0003", tmp_path / "device.key.pem")
    assert b"PRIVATE KEY" not in csr
    cert = device_ca.sign_device_csr(authority, csr, "ZC1-0003", clock)
    key = serialization.load_pem_private_key(
        (tmp_path / "device.key.pem").read_bytes(), password=None
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert.public_key() == key.public_key()
    assert device_ca.common_name(cert) == "ZC1-0003"


def test_unacceptable_csrs_are_refused_with_a_reason(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    p256 = ec.generate_private_key(ec.SECP256R1())
    good = _csr("ZC1-0004", p256)
    with pytest.raises(CsrInvalid, match="CN must equal"):
        device_ca.sign_device_csr(authority, good, "ZC1-9999", clock)
    with pytest.raises(CsrInvalid, match="P-256"):
        device_ca.sign_device_csr(
            authority, _csr("ZC1-0004", ec.generate_private_key(ec.SECP384R1())), "ZC1-0004", clock
        )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(CsrInvalid, match="P-256"):
        device_ca.sign_device_csr(authority, _csr("ZC1-0004", rsa_key), "ZC1-0004", clock)
    with pytest.raises(CsrInvalid, match="not a PEM"):
        device_ca.sign_device_csr(
            authority, b"-----BEGIN CERTIFICATE REQUEST-----\nxx", "ZC1-0004", clock
        )
    with pytest.raises(SerialInvalid):
        device_ca.sign_device_csr(authority, _csr("bridge", p256), "bridge", clock)


def test_csr_with_a_broken_signature_is_refused(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    request = x509.load_pem_x509_csr(_csr("ZC1-0005", ec.generate_private_key(ec.SECP256R1())))
    der = bytearray(request.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # inside the signature value
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrInvalid, match=r"signature|verified"):
        device_ca.sign_device_csr(authority, tampered, "ZC1-0005", clock)


def test_batch_signing_keeps_going_past_a_bad_row(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    authority = device_ca.init_ca(tmp_path / "ca", PKI_PASSPHRASE, clock)
    rows = [
        device_ca.DeviceCsr(serial, _csr(serial, ec.generate_private_key(ec.SECP256R1())))
        for serial in ("ZC1-1000", "ZC1-1001")
    ]
    rows.insert(1, device_ca.DeviceCsr("ZC1-1002", b"garbage"))
    results = device_ca.sign_device_csrs(authority, rows, clock)
    assert [r.serial for r in results] == ["ZC1-1000", "ZC1-1002", "ZC1-1001"]
    assert results[0].certificate is not None
    assert results[2].certificate is not None
    assert results[1].certificate is None
    assert isinstance(results[1].error, CsrInvalid)
    assert len({r.certificate.serial_number for r in results if r.certificate}) == 2


def test_server_certificate_serves_the_named_hosts_only_as_a_server(device_pki: LocalPki) -> None:
    cert = device_ca.read_certificate(device_pki.server_cert_file)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    ok = _openssl_verify(device_pki.ca_file, device_pki.server_cert_file, "sslserver")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert _openssl_verify(device_pki.ca_file, device_pki.server_cert_file, "sslclient").returncode
    assert (
        device_ca.certificate_needs_renewal(
            device_pki.server_cert_file, SystemClock(), margin=dt.timedelta(days=30)
        )
        is False
    )
    assert device_ca.certificate_needs_renewal(
        device_pki.server_cert_file, SystemClock(), margin=dt.timedelta(days=400)
    )


def test_bridge_certificate_is_a_client_named_bridge(device_pki: LocalPki) -> None:
    cert = device_ca.read_certificate(device_pki.bridge_cert_file)
    assert device_ca.common_name(cert) == device_ca.BRIDGE_COMMON_NAME == "bridge"
    ok = _openssl_verify(device_pki.ca_file, device_pki.bridge_cert_file, "sslclient")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_fingerprint_matches_openssl(device_pki: LocalPki) -> None:
    device = device_pki.mint_device("ZC1-0006")
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(device.cert_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = out.strip().split("=", 1)[1].replace(":", "").lower()
    assert device_ca.certificate_fingerprint(device.certificate) == expected
