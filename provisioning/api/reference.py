"""Render the Markdown API reference (docs/API.md) from the declared endpoints."""

from __future__ import annotations

from pathlib import Path

from provisioning.api.routing import Endpoint
from provisioning.app import all_endpoints

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"

HEADER = """# HTTP API

JSON over HTTPS, versioned under `/v1`. The machine-readable description is
served by every instance at `/openapi.json` (OpenAPI 3.1), generated from the
same route table as the server, so it cannot drift. This page is generated from
that table too (`scripts/gen_api_docs.py`; a test fails when it is stale).

## Conventions

- **Authentication**: `Authorization: Bearer <session token>` from
  `/v1/auth/register` or `/v1/auth/login`. Tokens are opaque and stored only as
  SHA-256 hashes. Ops routes take the operations token from the secrets file.
- **Errors** always have one shape, with a stable `code`:
  `{"error": {"code": "device_bound_to_other", "message": "…", "details": {}}}`.
  `429 too_many_attempts` carries `Retry-After` (seconds).
- **Request bodies** are `application/json`, at most `server.max_body_bytes`;
  unknown fields are refused (`422 validation_error`), never dropped; a field
  that would carry the phone's location (`latitude`, `longitude`, `location`,
  `gps`, …) anywhere in a body is refused with `422 location_not_accepted`.
- **Basic mode**: an account that withdrew the privacy policy gets
  `403 basic_mode` from every route not marked *basic mode* below.

## Routes
"""


def _row(ep: Endpoint) -> str:
    auth = {"none": "public", "user": "session", "ops": "ops token"}[ep.auth]
    if ep.auth == "user" and ep.basic_mode_ok:
        auth += ", basic mode"
    errors = sorted({e.code for e in ep.errors})
    body = ep.body.__name__ if ep.body else ""
    response = ep.response.__name__ if ep.response else ""
    return (
        f"| `{ep.method} {ep.path}` | {ep.summary} | {auth} | {body} | "
        f"{ep.status} {response} | {', '.join(errors)} |"
    )


def render() -> str:
    """Return the Markdown for every endpoint, grouped by tag."""
    lines = [HEADER]
    tags: dict[str, list[Endpoint]] = {}
    for ep in all_endpoints():
        tags.setdefault(ep.tag, []).append(ep)
    for tag, endpoints in tags.items():
        lines.append(f"\n### {tag}\n")
        lines.append("| route | what | auth | body | success | specific errors |")
        lines.append("|---|---|---|---|---|---|")
        lines.extend(_row(ep) for ep in endpoints)
    return "\n".join(lines) + "\n"
