"""Import every model module so the metadata knows every table."""

from provisioning.storage import devices, models

__all__ = ["devices", "models"]
