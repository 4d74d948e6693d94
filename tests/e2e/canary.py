"""Canary scans: look for secrets in every form a store could hold them."""

from __future__ import annotations

import base64
import dataclasses
import logging
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def encodings(secret: str) -> dict[str, bytes]:
    """Return the byte forms of ``secret`` a leak could take: raw, UTF-16, hex, URL, base64."""
    raw = secret.encode()
    forms = {
        "utf-8": raw,
        "utf-16-le": secret.encode("utf-16-le"),
        "hex": raw.hex().encode(),
        "url": urllib.parse.quote_plus(secret).encode(),
    }
    # Base64 of the secret inside a longer blob depends on its offset modulo 3;
    # keep, for each offset, only the characters that the secret alone decides.
    for offset in range(3):
        for name, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * offset + raw)
            head = -(-offset * 4 // 3) + (1 if offset else 0)
            middle = encoded[head:-4]
            if len(middle) >= 8:
                forms[f"{name}+{offset}"] = middle
    return forms


@dataclasses.dataclass(frozen=True, slots=True)
class Leak:
    """Where a canary was found."""

    where: str
    canary: str
    form: str


def scan_bytes(where: str, data: bytes, canaries: Iterable[str]) -> list[Leak]:
    """Return every canary form found in ``data``."""
    return [
        Leak(where, canary, form)
        for canary in canaries
        for form, needle in encodings(canary).items()
        if needle in data
    ]


def scan_files(paths: Iterable[Path], canaries: Iterable[str]) -> list[Leak]:
    """Return every canary form found in any of ``paths`` (read as raw bytes)."""
    wanted = list(canaries)
    leaks: list[Leak] = []
    for path in paths:
        leaks.extend(scan_bytes(str(path), path.read_bytes(), wanted))
    return leaks


def files_under(*roots: Path) -> list[Path]:
    """Return every regular file under ``roots``."""
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.is_file())


QUIET_LOGGERS = ("bumble",)  # radio-level PDU dumps: no secrets, megabytes of text


@contextmanager
def captured_logs(path: Path) -> Iterator[Path]:
    """Write every log record (DEBUG up; radio dumps INFO up) to ``path`` while the block runs."""
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.INFO)
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
