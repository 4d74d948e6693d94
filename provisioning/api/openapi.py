"""Build the OpenAPI 3.1 document from the declared endpoints and their models."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from provisioning.api.routing import Endpoint
from provisioning.errors import (
    BadRequest,
    BasicMode,
    LocationNotAccepted,
    PayloadTooLarge,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
    ZanuoError,
)

_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
REF_TEMPLATE = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def _openapi_path(path: str) -> str:
    return _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


def build_openapi(endpoints: list[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    """Return the OpenAPI document for ``endpoints``."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for ep in endpoints:
        if ep.body is not None:
            models.append((ep.body, "validation"))
        if ep.query is not None:
            models.append((ep.query, "validation"))
        if ep.response is not None:
            models.append((ep.response, "serialization"))
    refs, defs = models_json_schema(models, ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA

    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for ep in endpoints:
        operation: dict[str, Any] = {
            "operationId": ep.name,
            "summary": ep.summary,
            "tags": [ep.tag],
            "responses": _responses(ep, refs),
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PATH_PARAM.findall(ep.path)
        ]
        if ep.query is not None:
            for name, field in ep.query.model_fields.items():
                params.append(
                    {
                        "name": field.alias or name,
                        "in": "query",
                        "required": field.is_required(),
                        "schema": {"type": "string"},
                        "description": field.description or "",
                    }
                )
        if params:
            operation["parameters"] = params
        if ep.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(ep.body, "validation")]}},
            }
        if ep.auth == "user":
            operation["security"] = [{"session": []}]
        elif ep.auth == "ops":
            operation["security"] = [{"ops": []}]
        paths[_openapi_path(ep.path)][ep.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(paths),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "http", "scheme": "bearer", "description": "app session token"},
                "ops": {"type": "http", "scheme": "bearer", "description": "operations token"},
            },
        },
    }


def _responses(ep: Endpoint, refs: dict[Any, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if ep.response is not None:
        responses[str(ep.status)] = {
            "description": ep.summary,
            "content": {"application/json": {"schema": refs[(ep.response, "serialization")]}},
        }
    else:
        responses[str(ep.status)] = {"description": ep.summary}
    errors: list[type[ZanuoError]] = list(ep.errors)
    if ep.body is not None or ep.query is not None:
        errors += [
            ValidationFailed,
            LocationNotAccepted,
            BadRequest,
            PayloadTooLarge,
            UnsupportedMediaType,
        ]
    if ep.auth != "none":
        errors.append(Unauthenticated)
    if ep.auth == "user" and not ep.basic_mode_ok:
        errors.append(BasicMode)
    by_status: dict[int, list[str]] = defaultdict(list)
    for error in errors:
        if error.code not in by_status[error.status]:
            by_status[error.status].append(error.code)
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": "error codes: " + ", ".join(codes),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return responses
