"""The data catalog: every stored column declares what it holds and how long.

Export and erasure are driven by these declarations, and a test fails when a
column has none, so a new column cannot slip in uncatalogued.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Category(enum.StrEnum):
    """What kind of data a column holds."""

    NONE = "none"  # technical: ids, timestamps, states, counters
    ACCOUNT = "account"  # profile and account settings (personal)
    CONTACT = "contact"  # email, phone (personal, encrypted, looked up by blind index)
    DEVICE = "device"  # device registry facts (not personal on their own)
    NETWORK = "network"  # network facts about a device (type, online), never Wi-Fi secrets
    EVENT = "event"  # device events and screenshots (personal once bound)
    LOCATION = "location"  # device location, only with consent
    CONSENT = "consent"  # consent ledger
    OPERATION = "operation"  # operation log of security-relevant actions
    SECURITY_SECRET_HASH = "security-secret-hash"  # hashes of passwords, codes, tokens
    KEY_MATERIAL = "key-material"  # wrapped data keys, certificates


PERSONAL_CATEGORIES = frozenset(
    {
        Category.ACCOUNT,
        Category.CONTACT,
        Category.EVENT,
        Category.LOCATION,
        Category.CONSENT,
        Category.OPERATION,
    }
)


class Retention(enum.StrEnum):
    """How long a column's value is kept."""

    ACCOUNT_LIFETIME = "account-lifetime"  # until the account is cancelled
    DEVICE_LIFETIME = "device-lifetime"  # as long as the device is registered
    BINDING_LIFETIME = "binding-lifetime"  # until the device is unbound
    SHORT_LIVED = "short-lived"  # codes and tokens: purged after expiry
    ONE_DAY = "one-day"  # screenshots: deleted the next day
    CONFIGURED = "configured"  # operation log: retention.operation_log_days
    UNTIL_WITHDRAWN = "until-withdrawn"  # consent-gated data


@dataclass(frozen=True, slots=True)
class ColumnClass:
    """The catalog entry for one column."""

    category: Category
    retention: Retention
    encrypted: bool = False

    @property
    def personal(self) -> bool:
        """Tell whether the column holds personal data."""
        return self.category in PERSONAL_CATEGORIES


CATALOG_KEY = "zanuo_catalog"


def cat(category: Category, retention: Retention, *, encrypted: bool = False) -> dict[str, Any]:
    """Return the ``info=`` for a mapped column."""
    return {CATALOG_KEY: ColumnClass(category, retention, encrypted)}


def column_class(info: dict[str, Any]) -> ColumnClass | None:
    """Return a column's catalog entry, or None when it has none."""
    entry = info.get(CATALOG_KEY)
    return entry if isinstance(entry, ColumnClass) else None
