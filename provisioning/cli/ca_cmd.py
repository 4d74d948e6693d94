"""``zanuo ca init|show|server-cert|bridge-cert|crl``: the device CA and its CRL."""

from __future__ import annotations

import argparse

from provisioning.cli.common import SubParsers
from provisioning.cli.devices_cmd import open_registry, print_crl_outcome
from provisioning.clock import SystemClock
from provisioning.config import Secrets, Settings
from provisioning.domain.registry import CaPaths
from provisioning.security import ca as device_ca
from provisioning.security.crl import read_crl, write_crl


def register(sub: SubParsers) -> None:
    """Add the ``ca`` commands."""
    ca = sub.add_parser("ca", help="the device CA, broker/bridge certificates and the CRL")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True)
    init = ca_sub.add_parser("init", help="create the device CA (refuses to overwrite one)")
    init.add_argument("--common-name", default="Zanuo Device CA")
    init.set_defaults(handler=init_ca)
    show = ca_sub.add_parser("show", help="describe the CA, its CRL and the broker certificate")
    show.set_defaults(handler=show_ca)
    server = ca_sub.add_parser("server-cert", help="issue the broker's TLS server certificate")
    server.add_argument(
        "--host", action="append", required=True, help="DNS name or IP (repeat for more)"
    )
    server.set_defaults(handler=server_cert)
    bridge = ca_sub.add_parser("bridge-cert", help="issue the bridge's client certificate")
    bridge.set_defaults(handler=bridge_cert)
    crl = ca_sub.add_parser(
        "crl", help="reissue the CRL from the registry now and reload a managed broker"
    )
    crl.set_defaults(handler=reissue_crl)


def _print_certificate(title: str, description: device_ca.CertificateDescription) -> None:
    print(f"{title}:")
    print(f"  subject:     {description.subject}")
    print(f"  issuer:      {description.issuer}")
    print(f"  sha256:      {description.fingerprint_sha256}")
    print(f"  valid from:  {description.not_before.isoformat()}")
    print(f"  valid until: {description.not_after.isoformat()}")


def init_ca(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Create the CA and an empty CRL (a broker cannot start without its ``crlfile``)."""
    paths, clock = CaPaths.in_data_dir(settings.data_dir), SystemClock()
    authority = device_ca.init_ca(
        paths.ca_dir,
        secrets.ca_passphrase.get_secret_value(),
        clock,
        common_name=args.common_name,
    )
    write_crl(authority, {}, paths.crl_file, clock)
    _print_certificate("device CA", device_ca.describe_certificate(authority.certificate))
    print(f"CA directory: {paths.ca_dir} (key encrypted with secrets.ca_passphrase)")
    print(f"CRL:          {paths.crl_file}")
    return 0


def show_ca(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Describe the CA, the CRL and the broker/bridge certificates (public facts only)."""
    paths = CaPaths.in_data_dir(settings.data_dir)
    _print_certificate("device CA", device_ca.describe_ca(paths.ca_dir))
    crl = read_crl(paths.crl_file)
    if crl is None:
        print(f"CRL: none at {paths.crl_file} (run `zanuo ca crl`)")
    else:
        next_update = crl.next_update_utc
        print(f"CRL: {paths.crl_file}")
        print(f"  revoked:     {len(crl)}")
        print(f"  last update: {crl.last_update_utc.isoformat()}")
        print(f"  next update: {next_update.isoformat() if next_update else '-'}")
    for title, path in (
        ("broker server certificate", paths.server_cert_file),
        ("bridge client certificate", paths.bridge_cert_file),
    ):
        if path.exists():
            _print_certificate(
                title, device_ca.describe_certificate(device_ca.read_certificate(path))
            )
    return 0


def server_cert(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Issue the broker's server key and certificate for the given hosts."""
    paths, clock = CaPaths.in_data_dir(settings.data_dir), SystemClock()
    authority = device_ca.load_ca(paths.ca_dir, secrets.ca_passphrase.get_secret_value())
    certificate = device_ca.issue_server_certificate(
        authority, args.host, paths.server_cert_file, paths.server_key_file, clock
    )
    _print_certificate("broker server certificate", device_ca.describe_certificate(certificate))
    print(f"certificate: {paths.server_cert_file}")
    print(f"key:         {paths.server_key_file}")
    return 0


def bridge_cert(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Issue the bridge's client key and certificate (CN = bridge)."""
    paths, clock = CaPaths.in_data_dir(settings.data_dir), SystemClock()
    authority = device_ca.load_ca(paths.ca_dir, secrets.ca_passphrase.get_secret_value())
    certificate = device_ca.issue_bridge_certificate(
        authority, paths.bridge_cert_file, paths.bridge_key_file, clock
    )
    _print_certificate("bridge client certificate", device_ca.describe_certificate(certificate))
    print(f"certificate: {paths.bridge_cert_file}")
    print(f"key:         {paths.bridge_key_file}")
    return 0


async def reissue_crl(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> int:
    """Write a fresh CRL from every revoked device and reload a managed broker."""
    async with open_registry(settings, secrets) as registry:
        outcome = await registry.reissue_crl()
    return print_crl_outcome(outcome, registry.paths)
