"""The service graph of one process, opened and closed as one unit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import aiohttp

from provisioning.clock import Clock, SystemClock
from provisioning.config import Secrets, Settings
from provisioning.domain.accounts import AccountService
from provisioning.domain.binding import BindingService
from provisioning.domain.consent import ConsentService
from provisioning.domain.devices import DeviceService
from provisioning.domain.limits import RateLimiter
from provisioning.domain.locations import LocationService
from provisioning.domain.retention import RetentionService
from provisioning.domain.rights import RightsService
from provisioning.domain.vault import DatabaseKeyStore, FileKeyStore, KeyStore, Vault
from provisioning.errors import ConfigError
from provisioning.metrics import Metrics
from provisioning.notify.delivery import (
    CodeSender,
    Notifier,
    OutboxSender,
    SmtpSender,
    WebhookSmsSender,
)
from provisioning.security.keys import BlindIndex, KeyRing, derive_subkey
from provisioning.security.passwords import Passwords
from provisioning.storage.engine import Database


@dataclass
class Services:
    """Everything a request handler or worker needs, built once per process."""

    settings: Settings
    secrets: Secrets
    db: Database
    clock: Clock
    metrics: Metrics
    keyring: KeyRing
    vault: Vault
    index: BlindIndex
    limiter: RateLimiter
    notifier: Notifier
    consents: ConsentService
    accounts: AccountService
    binding: BindingService
    devices: DeviceService
    locations: LocationService
    rights: RightsService
    retention: RetentionService


def build_notifier(settings: Settings, http: aiohttp.ClientSession) -> Notifier:
    """Choose the code senders the configuration names."""
    outbox = OutboxSender(settings.data_dir / "outbox.jsonl")
    notify = settings.notify
    if settings.is_production and "outbox" in (notify.email_backend, notify.sms_backend):
        raise ConfigError(
            "notify: the outbox backend is for development only; configure smtp/webhook",
            key="notify.email_backend",
        )
    email: CodeSender = outbox
    if notify.email_backend == "smtp":
        email = SmtpSender(
            notify.smtp_host,
            notify.smtp_port,
            notify.smtp_sender,
            starttls=notify.smtp_starttls,
            username=notify.smtp_username,
        )
    sms: CodeSender = outbox
    if notify.sms_backend == "webhook":
        if not notify.sms_webhook_url:
            raise ConfigError("notify.sms_webhook_url is required", key="notify.sms_webhook_url")
        sms = WebhookSmsSender(notify.sms_webhook_url, http)
    return Notifier(email, sms)


@asynccontextmanager
async def open_services(
    settings: Settings,
    secrets: Secrets,
    *,
    clock: Clock | None = None,
    passwords: Passwords | None = None,
    notifier: Notifier | None = None,
    migrate: bool = False,
) -> AsyncIterator[Services]:
    """Open the database and clients; close them all on exit."""
    clock = clock or SystemClock()
    async with AsyncExitStack() as stack:
        db = Database(
            settings.database_url,
            echo=settings.database.echo,
            pool_size=settings.database.pool_size,
        )
        stack.push_async_callback(db.dispose)
        if migrate:
            await db.upgrade()
        http = await stack.enter_async_context(aiohttp.ClientSession())
        notifier = notifier or build_notifier(settings, http)
        pepper = secrets.pepper.get_secret_value()
        keyring = KeyRing({k: secrets.kek(k) for k in secrets.keks}, secrets.active_kek)
        index = BlindIndex(derive_subkey(pepper, "blind-index"))
        metrics = Metrics()
        store: KeyStore = (
            FileKeyStore(settings.data_dir / "keys")
            if settings.privacy.key_store == "file"
            else DatabaseKeyStore()
        )
        vault = Vault(keyring, store)
        limiter = RateLimiter(index)
        consents = ConsentService(
            db=db, clock=clock, policy_version=settings.privacy.policy_version
        )
        accounts = AccountService(
            db=db,
            clock=clock,
            settings=settings.auth,
            vault=vault,
            index=index,
            code_key=derive_subkey(pepper, "one-time-codes"),
            limiter=limiter,
            passwords=passwords or Passwords(),
            notifier=notifier,
            metrics=metrics,
            consents=consents,
        )
        binding = BindingService(
            db=db,
            clock=clock,
            settings=settings.binding,
            limiter=limiter,
            label_key=derive_subkey(pepper, "label-codes"),
            metrics=metrics,
        )
        devices = DeviceService(
            db=db, clock=clock, settings=settings.binding, index=index, vault=vault
        )
        locations = LocationService(
            db=db, clock=clock, vault=vault, consents=consents, devices=devices
        )
        rights = RightsService(
            db=db,
            clock=clock,
            vault=vault,
            accounts=accounts,
            devices=devices,
            holidays=settings.privacy.holidays,
        )
        retention = RetentionService(db=db, clock=clock, settings=settings.retention)
        yield Services(
            settings=settings,
            secrets=secrets,
            db=db,
            clock=clock,
            metrics=metrics,
            keyring=keyring,
            vault=vault,
            index=index,
            limiter=limiter,
            notifier=notifier,
            consents=consents,
            accounts=accounts,
            binding=binding,
            devices=devices,
            locations=locations,
            rights=rights,
            retention=retention,
        )
