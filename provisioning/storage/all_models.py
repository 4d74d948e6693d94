"""Import every model module so the metadata knows every table."""

from provisioning.storage import models

__all__ = ["models"]
