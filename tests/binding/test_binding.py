"""Binding over real HTTP plus the device-side confirmation the bridge calls."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import string
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from provisioning.clock import FrozenClock
from provisioning.domain.binding import BindProof
from provisioning.errors import TooManyAttempts, VerificationCodeInvalid
from provisioning.notify.delivery import OutboxSender
from provisioning.services import Services
from provisioning.storage.devices import Command, Event, Ownership
from provisioning.storage.models import OperationLog
from tests.api.accounts_helpers import bearer, register
from tests.fixtures.devices import MakeAccounts, RegisterDevice

Client = TestClient[Any, Any]


async def _bind(client: Client, token: str, serial: str, code: str | None) -> Any:
    return await client.post(
        "/v1/bindings", json={"serial": serial, "verification_code": code}, headers=bearer(token)
    )


async def test_code_bind_then_device_confirmation_makes_it_bound(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    camera = await register_device("ZC1-0000001")
    me = await register(client, outbox, "ana@example.com")
    state = await (
        await client.get("/v1/devices/ZC1-0000001/bind-state", headers=bearer(me["token"]))
    ).json()
    assert state == {
        "serial": "ZC1-0000001",
        "exists": True,
        "online": False,
        "relation": "unbound",
        "bindable": True,
        "method": "code",
    }
    response = await _bind(client, me["token"], camera.serial, camera.code)
    assert response.status == 201
    issued = await response.json()
    binding_url = f"/v1/bindings/{issued['binding_id']}"
    assert (await (await client.get(binding_url, headers=bearer(me["token"]))).json())[
        "state"
    ] == "pending"

    result = await services.binding.confirm(camera.serial, issued["bind_token"])
    assert result.bound
    assert result.reason is None

    polled = await (await client.get(binding_url, headers=bearer(me["token"]))).json()
    assert polled["state"] == "bound"
    devices = await (await client.get("/v1/devices", headers=bearer(me["token"]))).json()
    assert [d["serial"] for d in devices["devices"]] == ["ZC1-0000001"]
    assert devices["devices"][0]["permission"] == "owner"
    again = await (
        await client.get("/v1/devices/ZC1-0000001/bind-state", headers=bearer(me["token"]))
    ).json()
    assert again["relation"] == "mine"
    # QoS 1 redelivers the device's message: still "bound", nothing twice.
    assert (await services.binding.confirm(camera.serial, issued["bind_token"])).bound


async def test_pre_check_never_reveals_the_other_owner(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    camera = await register_device("ZC1-0000002")
    owner = await register(client, outbox, "own@example.com")
    other = await register(client, outbox, "oth@example.com")
    issued = await (await _bind(client, owner["token"], camera.serial, camera.code)).json()
    await services.binding.confirm(camera.serial, issued["bind_token"])
    response = await client.get(
        "/v1/devices/ZC1-0000002/bind-state", headers=bearer(other["token"])
    )
    text = await response.text()
    assert (await response.json())["relation"] == "other"
    assert owner["account_id"] not in text
    assert "own@example.com" not in text
    refused = await _bind(client, other["token"], camera.serial, camera.code)
    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "device_bound_to_other"
    mine = await _bind(client, owner["token"], camera.serial, camera.code)
    assert (await mine.json())["error"]["code"] == "device_already_yours"
    missing = await client.get("/v1/devices/ZC9-9999999/bind-state", headers=bearer(other["token"]))
    assert (await missing.json())["exists"] is False
    assert (await _bind(client, other["token"], "ZC9-9999999", "ABCDEF")).status == 404


async def test_pairing_token_binds_a_codeless_lock_with_its_signed_proof(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    hub = await register_device("ZH1-0000001", "hub")
    lock = await register_device("ZL1-0000001", "lock", with_code=False)
    me = await register(client, outbox, "lo@example.com")
    hub_binding = await (await _bind(client, me["token"], hub.serial, hub.code)).json()
    assert (await services.binding.confirm(hub.serial, hub_binding["bind_token"])).bound

    no_code = await _bind(client, me["token"], lock.serial, "ABCDEF")
    assert (await no_code.json())["error"]["code"] == "code_not_supported"

    issued = await (await client.post("/v1/pairing-tokens", headers=bearer(me["token"]))).json()
    token = issued["pairing_token"]
    missing = await services.binding.confirm(lock.serial, token, parent_serial=hub.serial)
    assert (missing.bound, missing.reason) == (False, "proof_required")
    nonce, signature = lock.proof(token)
    forged = await services.binding.confirm(
        lock.serial, token, proof=BindProof(nonce, hub.proof(token)[1]), parent_serial=hub.serial
    )
    assert (forged.bound, forged.reason) == (False, "proof_invalid")

    ok = await services.binding.confirm(
        lock.serial, token, proof=BindProof(nonce, signature), parent_serial=hub.serial
    )
    assert ok.bound
    shown = await (
        await client.get(f"/v1/pairing-tokens/{issued['token_id']}", headers=bearer(me["token"]))
    ).json()
    assert shown["used"] is True
    assert [(d["serial"], d["state"]) for d in shown["devices"]] == [("ZL1-0000001", "bound")]
    device = await (await client.get("/v1/devices/ZL1-0000001", headers=bearer(me["token"]))).json()
    assert (device["parent_hub"], device["network_type"]) == ("ZH1-0000001", "ble")

    second = await register_device("ZL1-0000002", "lock", with_code=False)
    reuse = await services.binding.confirm(
        second.serial, token, proof=BindProof(*second.proof(token)), parent_serial=hub.serial
    )
    assert (reuse.bound, reuse.reason) == (False, "token_used")


async def test_expired_and_reused_tokens_are_refused_with_their_codes(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    clock: FrozenClock,
) -> None:
    camera = await register_device("ZC1-0000003")
    me = await register(client, outbox, "ex@example.com")
    issued = await (await _bind(client, me["token"], camera.serial, camera.code)).json()
    clock.advance(dt.timedelta(minutes=10, seconds=1))
    late = await services.binding.confirm(camera.serial, issued["bind_token"])
    assert (late.bound, late.reason) == (False, "token_expired")
    polled = await (
        await client.get(f"/v1/bindings/{issued['binding_id']}", headers=bearer(me["token"]))
    ).json()
    assert (polled["state"], polled["reason"]) == ("expired", "token_expired")

    fresh = await (await _bind(client, me["token"], camera.serial, camera.code)).json()
    assert (await services.binding.confirm(camera.serial, fresh["bind_token"])).bound
    assert (
        await client.delete(f"/v1/devices/{camera.serial}", headers=bearer(me["token"]))
    ).status == 204
    reused = await services.binding.confirm(camera.serial, fresh["bind_token"])
    assert (reused.bound, reused.reason) == (False, "token_used")
    other = await register_device("ZC1-0000004")
    foreign = await services.binding.confirm(other.serial, fresh["bind_token"])
    assert (foreign.bound, foreign.reason) == (False, "token_invalid")

    pairing = await (await client.post("/v1/pairing-tokens", headers=bearer(me["token"]))).json()
    lock = await register_device("ZL1-0000003", "lock", with_code=False)
    clock.advance(dt.timedelta(minutes=11))
    expired = await services.binding.confirm(
        lock.serial,
        pairing["pairing_token"],
        proof=BindProof(*lock.proof(pairing["pairing_token"])),
    )
    assert (expired.bound, expired.reason) == (False, "token_expired")


async def test_wrong_code_five_times_locks_the_device_for_that_account_and_source(
    client: Client,
    outbox: OutboxSender,
    services: Services,
    register_device: RegisterDevice,
    clock: FrozenClock,
) -> None:
    camera = await register_device("ZC1-0000005")
    me = await register(client, outbox, "lk@example.com")
    wrong = "AAAAAA" if camera.code != "AAAAAA" else "BBBBBB"
    for _ in range(5):
        response = await _bind(client, me["token"], camera.serial, wrong)
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "verification_code_invalid"
    locked = await _bind(client, me["token"], camera.serial, camera.code)
    assert locked.status == 429
    assert (await locked.json())["error"]["code"] == "too_many_attempts"
    assert int(locked.headers["Retry-After"]) == 60
    log = await (await client.get("/v1/me/operations", headers=bearer(me["token"]))).json()
    assert any(
        op["action"] == "binding.code_check" and op["outcome"] == "locked"
        for op in log["operations"]
    )

    clock.advance(dt.timedelta(seconds=61))
    for _ in range(5):
        await _bind(client, me["token"], camera.serial, wrong)
    second = await _bind(client, me["token"], camera.serial, camera.code)
    assert int(second.headers["Retry-After"]) == 120, "the second lockout lasts twice as long"
    clock.advance(dt.timedelta(seconds=121))
    assert (await _bind(client, me["token"], camera.serial, camera.code)).status == 201


async def test_ten_thousand_random_guesses_from_many_accounts_never_bind(
    services: Services,
    register_device: RegisterDevice,
    make_accounts: MakeAccounts,
    clock: FrozenClock,
) -> None:
    camera = await register_device("ZC1-0000006")
    accounts = await make_accounts(100)
    rng = random.Random(6)
    outcomes = {"invalid": 0, "locked": 0}
    for round_ in range(100):
        for n, account in enumerate(accounts):
            guess = "".join(rng.choice(string.ascii_uppercase) for _ in range(6))
            if guess == camera.code:
                continue
            try:
                await services.binding.bind_with_code(
                    account, camera.serial, guess, f"198.51.100.{n}"
                )
            except VerificationCodeInvalid:
                outcomes["invalid"] += 1
            except TooManyAttempts:
                outcomes["locked"] += 1
        clock.advance(dt.timedelta(seconds=37 + round_))
    assert sum(outcomes.values()) >= 9_999
    assert outcomes["locked"] > outcomes["invalid"], "lockouts must stop most guesses"
    async with services.db.session() as session:
        assert await session.get(Ownership, camera.serial) is None
        pending = await session.scalar(
            select(func.count()).select_from(OperationLog).where(OperationLog.outcome == "pending")
        )
    assert pending == 0


@pytest.mark.timeout(240)
async def test_fifty_accounts_racing_for_one_device_leave_exactly_one_owner(
    services: Services, register_device: RegisterDevice, make_accounts: MakeAccounts
) -> None:
    camera = await register_device("ZC1-0000007")
    assert camera.code is not None
    accounts = await make_accounts(50)
    issued = await asyncio.gather(
        *(
            services.binding.bind_with_code(a, camera.serial, camera.code, f"203.0.113.{i}")
            for i, a in enumerate(accounts)
        )
    )
    results = await asyncio.gather(
        *(services.binding.confirm(camera.serial, b.bind_token) for b in issued)
    )
    winners = [r for r in results if r.bound]
    assert len(winners) == 1
    assert {r.reason for r in results if not r.bound} == {"device_bound_to_other"}
    async with services.db.session() as session:
        owner = await session.get(Ownership, camera.serial)
    assert owner is not None
    assert owner.account_id == winners[0].account_id
    for account, binding in zip(accounts, issued, strict=True):
        row = await services.binding.binding(account, binding.binding_id)
        expected = "bound" if account.account_id == owner.account_id else "rejected"
        assert row.state == expected


async def test_unbind_removes_the_device_queues_a_reset_and_deletes_its_events(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    camera = await register_device("ZC1-0000008")
    me = await register(client, outbox, "ub@example.com")
    issued = await (await _bind(client, me["token"], camera.serial, camera.code)).json()
    await services.binding.confirm(camera.serial, issued["bind_token"])
    async with services.db.session() as session:
        session.add(
            Event(
                id=uuid.uuid4(),
                serial=camera.serial,
                event_id="ev-1",
                event_type="motion",
                occurred_at=services.clock.now(),
                received_at=services.clock.now(),
            )
        )
        await session.commit()
    assert (
        await client.delete(f"/v1/devices/{camera.serial}", headers=bearer(me["token"]))
    ).status == 204
    assert (await (await client.get("/v1/devices", headers=bearer(me["token"]))).json())[
        "devices"
    ] == []
    async with services.db.session() as session:
        commands = (
            (await session.execute(select(Command).where(Command.serial == camera.serial)))
            .scalars()
            .all()
        )
        events = await session.scalar(
            select(func.count()).select_from(Event).where(Event.serial == camera.serial)
        )
    assert [(c.name, c.state) for c in commands] == [("reset", "queued")]
    assert events == 0
    state = await (
        await client.get(f"/v1/devices/{camera.serial}/bind-state", headers=bearer(me["token"]))
    ).json()
    assert state["relation"] == "unbound"


async def test_device_factory_reset_unbinds_it_in_the_cloud(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    camera = await register_device("ZC1-0000009")
    me = await register(client, outbox, "fr@example.com")
    issued = await (await _bind(client, me["token"], camera.serial, camera.code)).json()
    await services.binding.confirm(camera.serial, issued["bind_token"])
    assert await services.devices.device_reset(camera.serial) is True
    assert (await (await client.get("/v1/devices", headers=bearer(me["token"]))).json())[
        "devices"
    ] == []
    log = await (await client.get("/v1/me/operations", headers=bearer(me["token"]))).json()
    assert "device.device_reset" in [op["action"] for op in log["operations"]]
    assert await services.devices.device_reset(camera.serial) is False


async def test_revoked_device_cannot_bind(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    camera = await register_device("ZC1-0000010")
    me = await register(client, outbox, "rv@example.com")
    issued = await (await _bind(client, me["token"], camera.serial, camera.code)).json()
    async with services.db.session() as session:
        from provisioning.storage.devices import Device

        device = await session.get(Device, camera.serial)
        assert device is not None
        device.revoked_at, device.revoked_reason = services.clock.now(), "key_compromise"
        await session.commit()
    refused = await _bind(client, me["token"], camera.serial, camera.code)
    assert (await refused.json())["error"]["code"] == "device_revoked"
    late = await services.binding.confirm(camera.serial, issued["bind_token"])
    assert (late.bound, late.reason) == (False, "device_revoked")


@pytest.mark.parametrize("extra", [{"latitude": 1.0, "longitude": 2.0}, {"location": "home"}])
async def test_binding_request_with_location_is_refused(
    client: Client, outbox: OutboxSender, register_device: RegisterDevice, extra: dict[str, Any]
) -> None:
    camera = await register_device("ZC1-0000011")
    me = await register(client, outbox, "loc@example.com")
    response = await client.post(
        "/v1/bindings",
        json={"serial": camera.serial, "verification_code": camera.code, **extra},
        headers=bearer(me["token"]),
    )
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "location_not_accepted"


async def test_unbinding_a_ble_child_keeps_its_hub_so_the_reset_can_travel_through_it(
    client: Client, outbox: OutboxSender, services: Services, register_device: RegisterDevice
) -> None:
    hub = await register_device("ZH1-0000009", "hub")
    lock = await register_device("ZL1-0000009", "lock", with_code=False)
    me = await register(client, outbox, "ch@example.com")
    hub_binding = await (await _bind(client, me["token"], hub.serial, hub.code)).json()
    assert (await services.binding.confirm(hub.serial, hub_binding["bind_token"])).bound
    token = (await (await client.post("/v1/pairing-tokens", headers=bearer(me["token"]))).json())[
        "pairing_token"
    ]
    proof = BindProof(*lock.proof(token))
    assert (
        await services.binding.confirm(lock.serial, token, proof=proof, parent_serial=hub.serial)
    ).bound
    assert (
        await client.delete(f"/v1/devices/{lock.serial}", headers=bearer(me["token"]))
    ).status == 204
    async with services.db.session() as session:
        from provisioning.storage.devices import Device

        device = await session.get(Device, lock.serial)
        assert device is not None
        assert device.parent_serial == hub.serial
    assert await services.devices.device_reset(lock.serial) is False
    async with services.db.session() as session:
        reset = await session.get(Device, lock.serial)
        assert reset is not None
        assert reset.parent_serial is None, "after its reset the lock belongs to no hub"
