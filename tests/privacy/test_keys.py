"""Key-encryption keys rotate without losing a single account's data."""

from __future__ import annotations

import secrets as pysecrets
import uuid
from typing import Any

from aiohttp.test_utils import TestClient

from provisioning.domain.vault import Vault
from provisioning.notify.delivery import OutboxSender
from provisioning.security.keys import KeyRing
from provisioning.services import Services
from tests.api.accounts_helpers import bearer, register


async def test_rotation_rewraps_every_key_so_the_old_kek_can_be_retired(
    client: TestClient[Any, Any], outbox: OutboxSender, services: Services
) -> None:
    me = await register(client, outbox, "rot@example.com", nickname="Rotated")
    old = services.secrets.active_kek
    new_kek = pysecrets.token_bytes(32)
    both = KeyRing({old: services.secrets.kek(old), "k2": new_kek}, active="k2")
    rotating = Vault(both, services.vault.store)
    async with services.db.session() as session:
        assert await rotating.rotate(session, services.clock.now()) == 1
        await session.commit()
    only_new = Vault(
        KeyRing({"k2": new_kek}, active="k2"),  # the retired KEK is gone
        services.vault.store,
    )
    services.accounts.vault = only_new
    profile = await (await client.get("/v1/me", headers=bearer(me["token"]))).json()
    assert profile["nickname"] == "Rotated"
    async with services.db.session() as session:
        wrapped = await services.vault.store.get(session, uuid.UUID(me["account_id"]))
    assert wrapped is not None
    assert wrapped.kek_id == "k2"
