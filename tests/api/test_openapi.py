"""The OpenAPI document is generated from the routes and cannot drift from them."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


async def test_openapi_describes_every_route(
    client: TestClient[Any, Any], app: web.Application
) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    document = await response.json()
    assert document["openapi"] == "3.1.0"
    served = {
        (route.method.lower(), re.sub(r"{([^}:]+)(:[^}]*)?}", r"{\1}", route.resource.canonical))
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    described = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served == described
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas, ref


async def test_request_schemas_forbid_unknown_fields(client: TestClient[Any, Any]) -> None:
    document = await (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    for path, ops in document["paths"].items():
        for op in ops.values():
            if "requestBody" in op:
                name = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit(
                    "/", 1
                )[1]
                assert schemas[name].get("additionalProperties") is False, (path, name)
            if "security" in op:
                assert "401" in op["responses"], path


def test_api_reference_page_is_generated_from_the_routes() -> None:
    from provisioning.api.reference import API_DOC, render

    assert API_DOC.read_text() == render(), "docs/API.md is stale: run scripts/gen_api_docs.py"
