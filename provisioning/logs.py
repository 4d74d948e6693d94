"""Logging setup with a redaction filter that guards every handler."""

from __future__ import annotations

import logging
import re
import sys

# Bearer tokens (zs_/zb_/zp_… prefixes), Authorization headers, and key=value
# pairs whose key names a secret. The filter is a last line of defence: code
# never passes secrets to a logger in the first place.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bz[a-z]_[A-Za-z0-9_-]{16,}"), "z?_***"),
    (re.compile(r"(?i)(authorization:\s*bearer\s+)\S+"), r"\1***"),
    (
        re.compile(
            r"(?i)\b(password|passphrase|pass|psk|token|code|secret|pop|pin)"
            r"(\"?\s*[:=]\s*\"?)([^\s\",}]+)"
        ),
        r"\1\2***",
    ),
)


def redact(text: str) -> str:
    """Return ``text`` with anything secret-looking masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


_HANDLER_MARK = "_zanuo_handler"


def configure_logging(level: str = "INFO", stream: object = None) -> logging.Handler:
    """Install one stream handler with the redaction filter on the root logger.

    Calling it again replaces the handler it installed before (the CLI runs
    many commands in one test process), so handlers never pile up.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
