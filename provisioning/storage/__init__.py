"""Relational storage: models, the data catalog, engine and migrations."""
