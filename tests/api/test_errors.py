"""Bad input gets a 4xx in the JSON error shape, never a 500."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from provisioning.api.keys import OPENAPI_KEY

Client = TestClient[Any, Any]


async def _error(response: Any) -> dict[str, Any]:
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    error: dict[str, Any] = body["error"]
    return error


async def test_malformed_json_is_bad_request(client: Client) -> None:
    response = await client.post(
        "/v1/auth/codes", data=b'{"email": "a@b.co", ', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await _error(response))["code"] == "bad_request"


async def test_unknown_field_is_refused_not_dropped(client: Client) -> None:
    response = await client.post(
        "/v1/auth/codes", json={"email": "a@b.co", "purpose": "login", "referrer": "x"}
    )
    assert response.status == 422
    error = await _error(response)
    assert error["code"] == "validation_error"
    assert error["details"]["errors"][0]["field"] == "referrer"


async def test_wrong_types_are_validation_errors(client: Client) -> None:
    response = await client.post("/v1/auth/codes", json={"email": 42, "purpose": ["login"]})
    assert response.status == 422
    assert (await _error(response))["code"] == "validation_error"


async def test_oversized_body_is_413(client: Client) -> None:
    response = await client.post(
        "/v1/auth/codes", json={"email": "a@b.co", "purpose": "login", "pad": "x" * 70_000}
    )
    assert response.status == 413
    assert (await _error(response))["code"] == "payload_too_large"


async def test_non_json_content_type_is_415(client: Client) -> None:
    response = await client.post("/v1/auth/codes", data="email=a@b.co")
    assert response.status == 415
    assert (await _error(response))["code"] == "unsupported_media_type"


async def test_unknown_route_and_method_use_the_error_shape(client: Client) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status == 404
    assert (await _error(missing))["code"] == "not_found"
    wrong_method = await client.put("/healthz")
    assert wrong_method.status == 405
    assert (await _error(wrong_method))["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@b.co", "purpose": "login", "latitude": 52.5, "longitude": 13.4},
        {"email": "a@b.co", "purpose": "login", "location": {"lat": 1, "lng": 2}},
        {"email": "a@b.co", "password": "x" * 8, "client": {"gps": "52.5,13.4"}},
    ],
)
async def test_location_fields_are_refused_with_their_own_code(
    client: Client, body: dict[str, Any]
) -> None:
    response = await client.post("/v1/auth/login", json=body)
    assert response.status == 422
    assert (await _error(response))["code"] == "location_not_accepted"


async def test_validation_errors_never_echo_the_input(client: Client) -> None:
    response = await client.post(
        "/v1/auth/login",
        json={"email": "a@b.co", "password": "short-canary", "client": {"client_type": "fridge"}},
    )
    text = await response.text()
    assert response.status == 422
    assert "short-canary" not in text


async def test_missing_or_bad_bearer_is_401(client: Client) -> None:
    assert (await client.get("/v1/me")).status == 401
    bad = await client.get("/v1/me", headers={"Authorization": "Bearer zs_not-a-token"})
    assert bad.status == 401
    assert (await _error(bad))["code"] == "unauthenticated"


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.randint(-(2**70), 2**70)
    if kind == 3:
        return rng.random() * 10 ** rng.randint(-5, 300)
    if kind == 4:
        return "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 40)))
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["email", "phone", "password", "code", "purpose", "client", "nickname", "region", "x"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 6))}


async def test_random_bodies_on_every_endpoint_never_cause_500(
    client: Client, app: web.Application
) -> None:
    rng = random.Random(20261129)
    openapi = app[OPENAPI_KEY]
    checked = 0
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            if "requestBody" not in operation:
                continue
            url = path.replace("{session_id}", "00000000-0000-0000-0000-000000000000")
            for _ in range(150):
                if rng.random() < 0.2:
                    data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
                else:
                    data = json.dumps(_random_json(rng)).encode()
                response = await client.request(
                    method.upper(), url, data=data, headers={"Content-Type": "application/json"}
                )
                assert 400 <= response.status < 500, (method, path, response.status)
                await _error(response)
                checked += 1
    assert checked >= 600
