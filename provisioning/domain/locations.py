"""Device location for local weather: only with consent, sealed, deleted on withdrawal."""

from __future__ import annotations

import datetime as dt
import json

from provisioning.clock import Clock
from provisioning.domain import oplog
from provisioning.domain.accounts import Principal
from provisioning.domain.consent import ConsentService, Purpose
from provisioning.domain.devices import DeviceService
from provisioning.domain.vault import Vault
from provisioning.errors import ConsentRequired, NotFound
from provisioning.security.keys import open_field, seal_field
from provisioning.storage.devices import DeviceLocation
from provisioning.storage.engine import Database

CONTEXT = "device_locations.location"


class LocationService:
    """Stores where an owner placed a device, gated by ``device_location``."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        vault: Vault,
        consents: ConsentService,
        devices: DeviceService,
    ) -> None:
        self.db = db
        self.clock = clock
        self.vault = vault
        self.consents = consents
        self.devices = devices

    async def put(
        self, principal: Principal, serial: str, latitude: float, longitude: float
    ) -> dt.datetime:
        """Store the location sealed under the owner's key."""
        now = self.clock.now()
        async with self.db.session() as session:
            await self.devices.require_owner(session, principal, serial)
            if not await self.consents.allows(
                session, principal.account_id, Purpose.DEVICE_LOCATION
            ):
                raise ConsentRequired(purpose=Purpose.DEVICE_LOCATION.value)
            dek = await self.vault.data_key(session, principal.account_id)
            sealed = seal_field(dek, json.dumps({"lat": latitude, "lon": longitude}), CONTEXT)
            await session.merge(
                DeviceLocation(
                    serial=serial,
                    account_id=principal.account_id,
                    location_enc=sealed,
                    updated_at=now,
                )
            )
            oplog.record(
                session,
                account_id=principal.account_id,
                action="device.location",
                outcome="ok",
                subject=serial,
                now=now,
            )
            await session.commit()
        return now

    async def get(self, principal: Principal, serial: str) -> tuple[float, float, dt.datetime]:
        """Return the stored location (owner only, consent still given)."""
        async with self.db.session() as session:
            await self.devices.require_owner(session, principal, serial)
            if not await self.consents.allows(
                session, principal.account_id, Purpose.DEVICE_LOCATION
            ):
                raise ConsentRequired(purpose=Purpose.DEVICE_LOCATION.value)
            row = await session.get(DeviceLocation, serial)
            if row is None or row.account_id != principal.account_id:
                raise NotFound("no location stored for this device")
            dek = await self.vault.data_key(session, principal.account_id)
            value = json.loads(open_field(dek, row.location_enc, CONTEXT))
            return float(value["lat"]), float(value["lon"]), row.updated_at
