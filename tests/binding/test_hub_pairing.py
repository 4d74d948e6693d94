"""POST /v1/devices/{hub}/ble-pairings refuses every bad request before a token leaves."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp.test_utils import TestClient

from provisioning.clock import FrozenClock
from provisioning.notify.delivery import OutboxSender
from provisioning.services import Services
from provisioning.storage.devices import Device
from tests.api.accounts_helpers import bearer, register
from tests.fixtures.devices import RegisterDevice, bind_with_code

Client = TestClient[Any, Any]


async def _code(response: Any) -> tuple[int, str]:
    return response.status, (await response.json())["error"]["code"]


async def test_hub_pairing_checks_owner_hub_token_and_presence(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    clock: FrozenClock,
) -> None:
    owner = await register(client, outbox, "hp@example.com")
    stranger = await register(client, outbox, "hs@example.com")
    hub = await bind_with_code(
        client, services, owner["token"], await register_device("ZH2-0000001", "hub")
    )
    camera = await bind_with_code(
        client, services, owner["token"], await register_device("ZC6-0000001")
    )
    mine = (await (await client.post("/v1/pairing-tokens", headers=bearer(owner["token"]))).json())[
        "pairing_token"
    ]
    theirs = (
        await (await client.post("/v1/pairing-tokens", headers=bearer(stranger["token"]))).json()
    )["pairing_token"]

    async def pair(serial: str, token: str, who: str = owner["token"]) -> tuple[int, str]:
        response = await client.post(
            f"/v1/devices/{serial}/ble-pairings", json={"token": token}, headers=bearer(who)
        )
        return await _code(response)

    assert await pair(hub, mine, stranger["token"]) == (404, "device_not_found")
    assert await pair(camera, mine) == (409, "not_a_hub")
    assert await pair(hub, theirs) == (404, "token_invalid")
    assert await pair(hub, mine) == (409, "device_offline")
    async with services.db.session() as session:
        device = await session.get(Device, hub)
        assert device is not None
        device.online = True
        await session.commit()
    assert await pair(hub, mine) == (503, "bridge_unavailable"), "no bridge in this app"
    clock.advance(dt.timedelta(minutes=11))
    assert await pair(hub, mine) == (410, "token_expired")
