"""The ops-only HTTP read of the registry: its own token, pagination, no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from provisioning.config import Secrets
from provisioning.domain.registry import DeviceRegistry
from tests.registry.factory import csr_rows, serial_of, write_jsonl

Client = TestClient[Any, Any]

SECRET_FIELDS = {"label_code", "label_code_digest", "certificate_pem", "private_key", "csr"}


def _ops(secrets: Secrets) -> dict[str, str]:
    return {"Authorization": f"Bearer {secrets.ops_token.get_secret_value()}"}


async def test_ops_read_one_device_shows_status_and_fingerprint_but_no_secret(
    client: Client,
    secrets: Secrets,
    registry: DeviceRegistry,
    premade_csrs: list[str],
    tmp_path: Path,
) -> None:
    await registry.import_file(write_jsonl(tmp_path / "f.jsonl", csr_rows(2, premade_csrs)))
    await registry.revoke(serial_of(1), "key_compromise")

    response = await client.get(f"/v1/ops/devices/{serial_of(0)}", headers=_ops(secrets))
    assert response.status == 200
    body = await response.json()
    device = await registry.get(serial_of(0))
    assert body["certificate_fingerprint"] == device.certificate_fingerprint
    assert (body["status"], body["has_label_code"], body["type"]) == ("active", True, "camera")
    assert not SECRET_FIELDS & set(body)
    assert "ABCDEF" not in await response.text()

    revoked = await (
        await client.get(f"/v1/ops/devices/{serial_of(1)}", headers=_ops(secrets))
    ).json()
    assert (revoked["status"], revoked["revoked_reason"]) == ("revoked", "key_compromise")


async def test_ops_list_pages_through_the_registry_by_serial(
    client: Client,
    secrets: Secrets,
    registry: DeviceRegistry,
    premade_csrs: list[str],
    tmp_path: Path,
) -> None:
    await registry.import_file(write_jsonl(tmp_path / "f.jsonl", csr_rows(5, premade_csrs)))
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        query = {"limit": "2"} | ({"after": after} if after else {})
        response = await client.get("/v1/ops/devices", params=query, headers=_ops(secrets))
        assert response.status == 200
        page = await response.json()
        pages += 1
        seen += [device["serial"] for device in page["devices"]]
        assert all(not SECRET_FIELDS & set(device) for device in page["devices"])
        after = page["next_after"]
        if after is None:
            break
    assert seen == [serial_of(i) for i in range(5)]
    assert pages == 3


async def test_ops_routes_refuse_app_users_and_missing_tokens(
    client: Client, registry: DeviceRegistry
) -> None:
    for path in ("/v1/ops/devices", f"/v1/ops/devices/{serial_of(0)}"):
        anonymous = await client.get(path)
        assert anonymous.status == 401
        wrong = await client.get(path, headers={"Authorization": "Bearer zs-not-the-ops-token"})
        assert wrong.status == 401
        assert (await wrong.json())["error"]["code"] == "unauthenticated"


async def test_ops_read_of_an_unknown_serial_is_device_not_found(
    client: Client, secrets: Secrets
) -> None:
    response = await client.get("/v1/ops/devices/ZC1-NOPE", headers=_ops(secrets))
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "device_not_found"


async def test_ops_list_refuses_a_bad_page_size(client: Client, secrets: Secrets) -> None:
    response = await client.get("/v1/ops/devices", params={"limit": "0"}, headers=_ops(secrets))
    assert response.status == 422
    assert (await response.json())["error"]["code"] == "validation_error"
