"""A lazy, read-only view of one snapshot: reading a name unpickles that name only.

``stashdb.at(rev)`` returns one. Its metadata (``entries``, ``commit``) costs
nothing to look at; a value is read and unpickled when it is asked for, with
the other members of its group and the workspace classes it refers to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stashdb.model import Commit
from stashdb.workspace.loader import Loader, ObjectSource

__all__ = ["Snapshot"]


class _SnapshotGlobals(dict[str, Any]):
    """Globals for functions read through a Snapshot: other names load on first use."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__(__builtins__=__builtins__, __name__=snapshot.commit.workspace)
        self._snapshot = snapshot

    def __missing__(self, name: str) -> Any:
        if name in self._snapshot:
            value = self._snapshot[name]
            self[name] = value
            return value
        raise KeyError(name)


class Snapshot(Mapping[str, Any]):
    """A read-only view of one commit; reading a name unpickles that name only.

    ``entries`` and ``commit`` give the metadata without unpickling anything.
    Skipped names are not keys; they are listed in ``commit.skipped``.
    """

    def __init__(
        self, source: ObjectSource, commit: Commit, *, verify: bool = False, safe: bool = False
    ) -> None:
        self.commit = commit
        self.entries = {e.name: e for e in commit.entries}
        self._names = [e.name for e in commit.entries if e.kind != "skipped"]
        self._globals = _SnapshotGlobals(self)
        self._loader = Loader(source, commit, self._globals, verify=verify, safe=safe)

    def __getitem__(self, name: str) -> Any:
        """The value of ``name``, unpickled now (with its group and what it refers to).

        Raises:
            KeyError: the snapshot holds no such name, or skipped it.
            RestoreError, CorruptChunk: it cannot be restored here.
        """
        entry = self.entries.get(name)
        if entry is None or entry.kind == "skipped":
            raise KeyError(name)
        return self._loader.load(name)

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` can be read."""
        entry = self.entries.get(name) if isinstance(name, str) else None
        return entry is not None and entry.kind != "skipped"

    def __iter__(self) -> Iterator[str]:
        """The names that can be read (skipped names are not keys)."""
        return iter(self._names)

    def __len__(self) -> int:
        """How many names can be read."""
        return len(self._names)

    def __repr__(self) -> str:
        return f"<stashdb.Snapshot {self.commit.short_id} {self._names!r}>"
