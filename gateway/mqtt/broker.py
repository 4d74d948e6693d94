"""The project's Mosquitto: config rendering, a managed child process, client TLS.

``render_broker_config`` turns ``config/mosquitto/*.template`` into a broker
directory under the data dir::

    <data dir>/mosquitto/mosquitto.conf    rendered config
    <data dir>/mosquitto/acl               rendered ACL
    <data dir>/mosquitto/persistence/      mosquitto.db (bridge's persistent session)
    <data dir>/mosquitto/mosquitto.log     the broker's stderr, appended across restarts

``ManagedMosquitto`` runs that config as a child process on loopback: it waits
until the listener completes a TLS handshake with the expected server
certificate, repeats that check every ``health_interval`` seconds (a broker
that fails ``unhealthy_after`` checks in a row is killed), restarts the broker
with exponential backoff when it dies,
``SIGHUP``s it on :meth:`ManagedMosquitto.reload` (after validating the CRL, as
an unreadable CRL at reload makes Mosquitto fail open) and stops it on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

import aiomqtt
from cryptography import x509

from provisioning.clock import Clock, SystemClock
from provisioning.errors import ConfigError, ZanuoError
from provisioning.security.ca import (
    CertificateAuthority,
    certificate_needs_renewal,
    certificate_pem,
    issue_bridge_certificate,
    issue_server_certificate,
    read_certificate,
    verify_issued_by,
    write_file_atomically,
)
from provisioning.security.crl import Revocation, crl_needs_reissue, validate_crl_file, write_crl
from provisioning.security.errors import CertificateInvalid

_LOGGER = logging.getLogger(__name__)

DEFAULT_TEMPLATE_DIR: Final = Path(__file__).resolve().parents[2] / "config" / "mosquitto"
CONFIG_TEMPLATE: Final = "mosquitto.conf.template"
ACL_TEMPLATE: Final = "acl.template"
DEFAULT_HOST: Final = "127.0.0.1"
_PLACEHOLDER: Final = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_RELOAD_MARKER: Final = b"Reloading config"
CERT_RENEW_BEFORE: Final = dt.timedelta(days=30)


class BrokerError(ZanuoError):
    """The managed broker failed to start, reload or stop."""

    status = 503
    code = "broker_error"
    default_message = "the MQTT broker is not available"


class BrokerStartFailed(BrokerError):
    """Mosquitto exited or never became ready; the message carries its last log lines."""

    code = "broker_start_failed"
    default_message = "the MQTT broker did not start"


class BrokerRefused(BrokerError):
    """The broker refused a client: TLS rejected it or no CONNACK came back."""

    code = "broker_refused"
    default_message = "the broker refused the connection"


class BrokerUnreachable(BrokerError):
    """Nothing answered at the broker's address (not running, wrong port, network)."""

    code = "broker_unreachable"
    default_message = "cannot reach the MQTT broker"


class BrokerNotTrusted(BrokerError):
    """The broker's server certificate did not verify against the CA the client trusts."""

    code = "broker_not_trusted"
    default_message = "the broker's certificate is not trusted (wrong CA or host name)"


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerTlsFiles:
    """The TLS material the listener uses: device CA, server cert/key, CRL."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerConfig:
    """A rendered broker directory and where its listener is."""

    directory: Path
    config_file: Path
    acl_file: Path
    persistence_dir: Path
    log_file: Path
    host: str
    port: int
    tls: BrokerTlsFiles


# --------------------------------------------------------------------------- rendering


def _config_path(path: Path, name: str) -> str:
    text = str(Path(path).resolve())
    # Mosquitto reads one directive per line and splits on whitespace; a path
    # with either would silently point somewhere else.
    if any(ch.isspace() for ch in text) or "#" in text:
        raise ConfigError(f"the {name} path must not contain whitespace or '#'", path=text)
    return text


def _render_template(template: str, values: Mapping[str, str], source: Path) -> str:
    missing: set[str] = set()

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            missing.add(name)
            return match.group(0)
        return values[name]

    rendered = _PLACEHOLDER.sub(substitute, template)
    if missing:
        raise ConfigError(
            f"the template {source} uses unknown placeholders: {', '.join(sorted(missing))}"
        )
    return rendered


def render_broker_config(
    data_dir: Path,
    tls: BrokerTlsFiles,
    *,
    port: int,
    host: str = DEFAULT_HOST,
    user: str | None = None,
    template_dir: Path = DEFAULT_TEMPLATE_DIR,
) -> BrokerConfig:
    """Render the project's Mosquitto template into ``<data_dir>/mosquitto/``."""
    if not 0 < port < 65536:
        raise ConfigError("the broker port must be 1-65535", key="mqtt.port", port=port)
    if not host or any(ch.isspace() for ch in host):
        raise ConfigError("the broker host must be an address", key="mqtt.host")
    for name in ("ca_file", "cert_file", "key_file", "crl_file"):
        path = getattr(tls, name)
        if not Path(path).is_file():
            raise ConfigError(f"the broker {name} does not exist", path=str(path))
    directory = Path(data_dir).resolve() / "mosquitto"
    persistence_dir = directory / "persistence"
    persistence_dir.mkdir(parents=True, exist_ok=True)
    config_file, acl_file = directory / "mosquitto.conf", directory / "acl"
    values = {
        "acl_file": _config_path(acl_file, "ACL"),
        "persistence_dir": _config_path(persistence_dir, "persistence"),
        # Mosquitto started as root drops to `nobody` unless told otherwise;
        # naming the current user keeps it as whoever runs the service.
        "user": user or pwd.getpwuid(os.geteuid()).pw_name,
        "host": host,
        "port": str(port),
        "ca_file": _config_path(tls.ca_file, "CA"),
        "cert_file": _config_path(tls.cert_file, "server certificate"),
        "key_file": _config_path(tls.key_file, "server key"),
        "crl_file": _config_path(tls.crl_file, "CRL"),
    }
    for template_name, target in ((CONFIG_TEMPLATE, config_file), (ACL_TEMPLATE, acl_file)):
        source = Path(template_dir) / template_name
        try:
            template = source.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read the broker template {source}") from err
        target.write_text(_render_template(template, values, source), encoding="utf-8")
    return BrokerConfig(
        directory=directory,
        config_file=config_file,
        acl_file=acl_file,
        persistence_dir=persistence_dir,
        log_file=directory / "mosquitto.log",
        host=host,
        port=port,
        tls=BrokerTlsFiles(
            ca_file=Path(tls.ca_file).resolve(),
            cert_file=Path(tls.cert_file).resolve(),
            key_file=Path(tls.key_file).resolve(),
            crl_file=Path(tls.crl_file).resolve(),
        ),
    )


# --------------------------------------------------------------------------- credentials


@dataclasses.dataclass(frozen=True, slots=True)
class BrokerCredentials:
    """Everything the embedded broker and the bridge need on disk."""

    tls: BrokerTlsFiles
    bridge_cert_file: Path
    bridge_key_file: Path


def _server_cert_fits(
    path: Path, ca: CertificateAuthority, hosts: Sequence[str], clock: Clock
) -> bool:
    if certificate_needs_renewal(path, clock, margin=CERT_RENEW_BEFORE):
        return False
    certificate = read_certificate(path)
    try:
        verify_issued_by(ca.certificate, certificate)
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (CertificateInvalid, x509.ExtensionNotFound):
        return False
    named = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    named |= set(san.get_values_for_type(x509.DNSName))
    return named == {str(host) for host in hosts}


def _client_cert_fits(path: Path, ca: CertificateAuthority, clock: Clock) -> bool:
    if certificate_needs_renewal(path, clock, margin=CERT_RENEW_BEFORE):
        return False
    try:
        verify_issued_by(ca.certificate, read_certificate(path))
    except CertificateInvalid:
        return False
    return True


def prepare_broker_credentials(
    ca: CertificateAuthority,
    directory: Path,
    clock: Clock,
    *,
    revoked: Mapping[int, Revocation],
    hosts: Sequence[str] = (DEFAULT_HOST, "localhost"),
) -> BrokerCredentials:
    """Create or refresh the broker CA copy, server cert, CRL and bridge cert in ``directory``.

    Idempotent: files that are still valid (issued by this CA, for these hosts,
    more than 30 days from expiry; a CRL not yet due) are left alone. ``revoked``
    must be the registry's full revocation list: it is used whenever the CRL
    is (re)written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tls = BrokerTlsFiles(
        ca_file=directory / "ca.crt.pem",
        cert_file=directory / "server.crt.pem",
        key_file=directory / "server.key.pem",
        crl_file=directory / "crl.pem",
    )
    ca_pem = certificate_pem(ca.certificate)
    if not tls.ca_file.is_file() or tls.ca_file.read_bytes() != ca_pem:
        write_file_atomically(tls.ca_file, ca_pem, mode=0o644)
    if not _server_cert_fits(tls.cert_file, ca, hosts, clock):
        issue_server_certificate(ca, list(hosts), tls.cert_file, tls.key_file, clock)
    credentials = BrokerCredentials(
        tls=tls,
        bridge_cert_file=directory / "bridge.crt.pem",
        bridge_key_file=directory / "bridge.key.pem",
    )
    if not _client_cert_fits(credentials.bridge_cert_file, ca, clock):
        issue_bridge_certificate(
            ca, credentials.bridge_cert_file, credentials.bridge_key_file, clock
        )
    if crl_needs_reissue(tls.crl_file, ca.certificate, clock):
        write_crl(ca, revoked, tls.crl_file, clock)
    return credentials


# --------------------------------------------------------------------------- clients


def client_tls_context(
    ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """Build the client ``SSLContext`` for a device or the bridge (server CA + own cert/key)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if (cert_file is None) != (key_file is None):
        raise ConfigError("a client certificate needs both cert_file and key_file")
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context


@contextlib.asynccontextmanager
async def connect_mqtt(
    host: str,
    port: int,
    tls_context: ssl.SSLContext,
    *,
    connack_timeout: float = 5.0,
    **client_options: Any,
) -> AsyncIterator[aiomqtt.Client]:
    """Connect an aiomqtt client, mapping a refused TLS client to :class:`BrokerRefused`.

    With TLS 1.3 the broker rejects a bad client certificate *after* the
    client's handshake finished, so aiomqtt sees no TLS error, just no CONNACK.
    """
    client = aiomqtt.Client(
        host, port, tls_context=tls_context, timeout=connack_timeout, **client_options
    )
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(client)
        except aiomqtt.MqttCodeError as err:
            raise BrokerRefused(
                "the broker refused the connection", host=host, port=port, reason=str(err)
            ) from err
        except aiomqtt.MqttError as err:
            raise _classify_connect_error(str(err), host, port) from err
        yield client


def _classify_connect_error(reason: str, host: str, port: int) -> BrokerError:
    # aiomqtt keeps only the text of the underlying error (MqttError(str(exc))).
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        return BrokerNotTrusted(host=host, port=port, reason=reason)
    if "timed out" in reason.lower() or ("[SSL" in reason and "ALERT" in reason.upper()):
        # TLS 1.3: the broker rejects the client certificate after the client's
        # handshake finished, so no TLS error surfaces, just no CONNACK.
        # TLS 1.2: the rejection arrives as a TLS alert during the handshake.
        return BrokerRefused(
            "the broker refused the connection (TLS rejected the client certificate, "
            "or no CONNACK arrived): check the certificate, its CA and the CRL",
            host=host,
            port=port,
            reason=reason,
        )
    return BrokerUnreachable(host=host, port=port, reason=reason)


# --------------------------------------------------------------------------- process


class ManagedMosquitto:
    """Run Mosquitto as a supervised child process for the lifetime of an ``async with``."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        executable: str | Path = "mosquitto",
        server_ca_file: Path | None = None,
        clock: Clock | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        restart_backoff: float = 0.2,
        max_restart_backoff: float = 10.0,
        stable_after: float = 30.0,
        health_interval: float | None = 30.0,
        health_timeout: float = 2.0,
        unhealthy_after: int = 3,
    ) -> None:
        self.config = config
        found = shutil.which(str(executable))
        if found is None:
            raise ConfigError(
                "mosquitto is not installed (apt-get install mosquitto) or not on PATH",
                executable=str(executable),
            )
        self._executable = found
        self._server_ca_file = server_ca_file or config.tls.ca_file
        self._clock = clock or SystemClock()
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._restart_backoff = restart_backoff
        self._max_restart_backoff = max_restart_backoff
        self._stable_after = stable_after
        self._health_interval = health_interval
        self._health_timeout = health_timeout
        self._unhealthy_after = unhealthy_after
        self._process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._stopping = False
        self._ready = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self.restarts = 0
        self.reloads = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise BrokerError("this ManagedMosquitto is already running")
        self._stopping = False
        async with contextlib.AsyncExitStack() as stack:
            self._log = stack.enter_context(self.config.log_file.open("ab"))
            stack.push_async_callback(self._terminate)
            await self._start_process()
            group = await stack.enter_async_context(asyncio.TaskGroup())
            self._supervisor = group.create_task(self._supervise(), name="mosquitto-supervisor")
            stack.callback(self._supervisor.cancel)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        stack, self._stack = self._stack, None
        if stack is not None:
            # LIFO: cancel the supervisor, wait for its task group, stop the
            # process, close the log file.
            await stack.aclose()
        self._supervisor = None

    @property
    def pid(self) -> int | None:
        """Return the broker's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def running(self) -> bool:
        """Return True while the broker process is up and was seen ready."""
        return self.pid is not None and self._ready.is_set()

    @property
    def host(self) -> str:
        """Return the listener's address."""
        return self.config.host

    @property
    def port(self) -> int:
        """Return the listener's port."""
        return self.config.port

    async def wait_ready(self) -> None:
        """Wait until the broker (re)started and passed its readiness check."""
        await self._ready.wait()

    async def reload(self, *, confirm_within: float = 5.0) -> None:
        """Validate the CRL, ``SIGHUP`` the broker and wait until it reloaded."""
        # An unparseable CRL at SIGHUP makes Mosquitto accept revoked
        # certificates again (measured): never signal with a bad one.
        async with self._reload_lock:
            await self._reload(confirm_within)

    async def _reload(self, confirm_within: float) -> None:
        ca_certificate = read_certificate(self.config.tls.ca_file)
        validate_crl_file(self.config.tls.crl_file, ca_certificate, self._clock)
        process = self._process
        if process is None or process.returncode is not None or not self._ready.is_set():
            raise BrokerError("the broker is not running; it will load the CRL when it starts")
        offset = self._log_size()
        process.send_signal(signal.SIGHUP)
        self.reloads += 1
        _LOGGER.info("Sent SIGHUP to Mosquitto (pid %s) to reload the CRL", process.pid)
        try:
            async with asyncio.timeout(confirm_within):
                await self.wait_for_log(_RELOAD_MARKER, offset=offset)
                # The marker is logged *before* the files are re-read. The
                # broker is single-threaded, so a handshake that completes
                # proves the reload (including the CRL) has finished.
                await self._tls_handshake()
        except (TimeoutError, OSError, ssl.SSLError):
            raise BrokerError("the broker did not confirm the reload") from None
        # Mosquitto prefixes its own errors "Error: "; OpenSSL lines about
        # clients (ours included: the handshake has no certificate) differ.
        errors = [line for line in self._log_since(offset).splitlines() if ": Error: " in line]
        if errors:
            # E.g. the CRL changed under us after validation: Mosquitto now
            # runs without it (fail-open). Say so loudly.
            _LOGGER.error("Mosquitto reported errors while reloading: %s", " | ".join(errors))
            raise BrokerError("the broker reported errors while reloading", log=errors)

    async def check_health(self, *, within: float = 2.0) -> bool:
        """Return True when the listener completes a TLS handshake with the expected server."""
        if self.pid is None:
            return False
        try:
            async with asyncio.timeout(within):
                await self._tls_handshake()
        except (OSError, TimeoutError, ssl.SSLError):
            return False
        return True

    def log_text(self) -> str:
        """Return the broker log written so far (diagnostics and tests)."""
        try:
            return self.config.log_file.read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    async def wait_for_log(self, marker: bytes, *, offset: int = 0) -> None:
        """Wait until ``marker`` appears in the broker log after byte ``offset`` (no timeout)."""
        while True:
            with contextlib.suppress(OSError), self.config.log_file.open("rb") as handle:
                handle.seek(offset)
                if marker in handle.read():
                    return
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ internals

    def log_size(self) -> int:
        """Return the current size of the broker log (an offset for :meth:`wait_for_log`)."""
        return self._log_size()

    def _log_size(self) -> int:
        try:
            return self.config.log_file.stat().st_size
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        with contextlib.suppress(OSError), self.config.log_file.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", "replace")
        return ""

    def _log_tail(self, offset: int) -> str:
        return "\n".join(self._log_since(offset).strip().splitlines()[-15:])

    async def _start_process(self) -> None:
        self._ready.clear()
        offset = self._log_size()
        process = await asyncio.create_subprocess_exec(
            self._executable,
            "-c",
            str(self.config.config_file),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        self._process = process
        self._started_at = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._start_timeout):
                await self._wait_until_serving(process, offset)
        except TimeoutError:
            await self._kill(process)
            raise BrokerStartFailed(
                f"Mosquitto did not serve TLS on {self.config.host}:{self.config.port} within "
                f"{self._start_timeout} s:\n{self._log_tail(offset)}"
            ) from None
        except BrokerStartFailed:
            raise
        except BaseException:
            await self._kill(process)
            raise
        self._ready.set()
        _LOGGER.info("Mosquitto (pid %s) serving mTLS on %s:%s", process.pid, self.host, self.port)

    async def _wait_until_serving(self, process: asyncio.subprocess.Process, offset: int) -> None:
        while True:
            if process.returncode is not None:
                # The exit reason (bad config, port in use) is in the log.
                raise BrokerStartFailed(
                    f"Mosquitto exited with status {process.returncode}:\n{self._log_tail(offset)}"
                )
            try:
                # Bounded per attempt: something else holding the port may
                # accept TCP and never answer the TLS hello.
                async with asyncio.timeout(1.0):
                    await self._tls_handshake()
            except (OSError, ssl.SSLError, TimeoutError):
                await asyncio.sleep(0.02)
                continue
            return

    async def _tls_handshake(self) -> None:
        # TLS 1.3 without a client certificate: the client side of the
        # handshake completes (the broker refuses us right after), which proves
        # the listener is up and presents a server certificate we trust for
        # this host, and not some other process that holds the port.
        context = ssl.create_default_context(cafile=str(self._server_ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        _, writer = await asyncio.open_connection(
            self.config.host, self.config.port, ssl=context, server_hostname=self.config.host
        )
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()

    async def _supervise(self) -> None:
        backoff = self._restart_backoff
        loop = asyncio.get_running_loop()
        while True:
            process = self._process
            assert process is not None  # set before the supervisor starts
            status = await self._watch(process)
            self._ready.clear()
            if self._stopping:
                return
            if loop.time() - self._started_at >= self._stable_after:
                backoff = self._restart_backoff
            self.restarts += 1
            _LOGGER.warning(
                "Mosquitto (pid %s) exited with status %s; restart #%s in %.1f s",
                process.pid,
                status,
                self.restarts,
                backoff,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_restart_backoff)
            try:
                await self._start_process()
            except BrokerStartFailed as err:
                # The failed process has exited, so the next wait() returns at
                # once and the loop retries with a longer backoff.
                _LOGGER.error("Mosquitto restart failed: %s", err.message)

    async def _watch(self, process: asyncio.subprocess.Process) -> int:
        """Return the exit status; kill the process if it stops answering TLS handshakes."""
        if self._health_interval is None:
            return await process.wait()
        failures = 0
        while True:
            try:
                async with asyncio.timeout(self._health_interval):
                    return await process.wait()
            except TimeoutError:
                pass
            if await self.check_health(within=self._health_timeout):
                failures = 0
                continue
            failures += 1
            _LOGGER.warning(
                "Mosquitto (pid %s) failed health check %s of %s",
                process.pid,
                failures,
                self._unhealthy_after,
            )
            if failures >= self._unhealthy_after:
                # A hung broker accepts TCP but never answers; only a restart helps.
                _LOGGER.error("Mosquitto (pid %s) is not answering; killing it", process.pid)
                await self._kill(process)

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()

    async def _terminate(self) -> None:
        self._stopping = True
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(self._stop_timeout):
                    await process.wait()
            except TimeoutError:
                _LOGGER.warning("Mosquitto (pid %s) ignored SIGTERM; killing it", process.pid)
        await self._kill(process)
        self._ready.clear()
        _LOGGER.info("Mosquitto (pid %s) stopped", process.pid)


def free_local_port(host: str = DEFAULT_HOST) -> int:
    """Return a TCP port that was free on ``host`` a moment ago (tests, ``zanuo serve``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


__all__ = [
    "BrokerConfig",
    "BrokerCredentials",
    "BrokerError",
    "BrokerNotTrusted",
    "BrokerRefused",
    "BrokerStartFailed",
    "BrokerTlsFiles",
    "BrokerUnreachable",
    "ManagedMosquitto",
    "client_tls_context",
    "connect_mqtt",
    "free_local_port",
    "prepare_broker_credentials",
    "render_broker_config",
]
