"""Alembic migrations of the stashdb store format (shipped as ``stashdb.migrations``)."""
