"""What event storage and its readers must agree on."""

from __future__ import annotations


def screenshot_context(serial: str, event_id: str) -> str:
    """Return the AEAD context a screenshot is sealed to: bound to its device and event."""
    return f"event-screenshot:{serial}:{event_id}"
