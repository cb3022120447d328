"""What a store is, importable without SQLAlchemy: its format, schema revisions, lock wait."""

from __future__ import annotations

__all__ = ["DEFAULT_LOCK_TIMEOUT", "FORMAT_VERSION", "SCHEMA_REVISIONS"]

#: The format this code writes, and the newest it reads. It changes only when
#: older code would misread a store; schema revisions that older code can live
#: with (an index, say) keep it.
FORMAT_VERSION = 1

#: The Alembic revisions this code knows, oldest first; the last is the head.
#: A test checks them against migrations/versions/.
SCHEMA_REVISIONS = ("0001", "0002", "0003", "0004", "0005")

#: Seconds a writer waits while another process holds the store's write lock,
#: before `StoreLocked` (``stashdb.open(..., lock_timeout=…)`` changes it).
DEFAULT_LOCK_TIMEOUT = 300.0

#: The setting a lazy clone keeps: the remote whose data it has not all copied yet
#: (its commits reach objects it lacks; `verify` counts them as not fetched).
LAZY_NOTE = "lazy_remote"
