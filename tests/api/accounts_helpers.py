"""Drive the account API the way the app does."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from provisioning.notify.delivery import OutboxSender

CLIENT_INFO = {
    "client_type": "android",
    "client_version": "3.2.1",
    "device_model": "Pixel 8",
    "os_version": "15",
}


def last_code(outbox: OutboxSender, recipient: str, purpose: str) -> str:
    """Return the newest code the outbox holds for a recipient and purpose."""
    codes = [
        m for m in outbox.read_codes() if m["recipient"] == recipient and m["purpose"] == purpose
    ]
    assert codes, f"no {purpose} code was sent to {recipient}"
    return codes[-1]["code"]


async def request_code(
    client: TestClient[Any, Any], outbox: OutboxSender, email: str, purpose: str
) -> str:
    """Ask for a code and read it from the outbox."""
    response = await client.post("/v1/auth/codes", json={"email": email, "purpose": purpose})
    assert response.status == 202, await response.text()
    return last_code(outbox, email, purpose)


async def register(
    client: TestClient[Any, Any],
    outbox: OutboxSender,
    email: str,
    password: str = "correct horse battery",
    **extra: Any,
) -> dict[str, Any]:
    """Register an account by email and return the issued session."""
    code = await request_code(client, outbox, email, "register")
    response = await client.post(
        "/v1/auth/register",
        json={"email": email, "password": password, "code": code, "client": CLIENT_INFO, **extra},
    )
    assert response.status == 201, await response.text()
    body: dict[str, Any] = await response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    """Return the Authorization header for a session token."""
    return {"Authorization": f"Bearer {token}"}
