"""A commit whose values are pickled and hashed, not yet written: what `Repo.submit` takes.

`Repo.prepare_changes` makes one on the caller's thread (the cell's, the
execution's); writing it (`PreparedCommit.write`) can then happen on the
Repo's writer thread, after the caller has moved on and changed its values
(`PreparedCommit.detach` copies what the pending rows still point at).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from stashdb.model import Commit, Entry, Origin, skipped_of

if TYPE_CHECKING:
    from stashdb.repo import Repo
    from stashdb.storage.objects import ObjectWriter

__all__ = ["PreparedCommit", "same_manifest"]


class PreparedCommit:
    """A commit whose values are pickled and hashed (and large chunks stored), not yet written.

    ``entries`` is its manifest already, so the next snapshot can be prepared
    against it before this one is written. ``written`` is the `Commit` once it is.
    """

    def __init__(
        self,
        repo: Repo,
        branch: str,
        message: str,
        entries: tuple[Entry, ...],
        made_by: Origin,
        cost: tuple[int, int],
        writer: ObjectWriter,
        base: Commit | PreparedCommit | None,
    ) -> None:
        self.repo, self.branch, self.message = repo, branch, message
        self.entries, self.origin, self.base = entries, made_by, base
        self._cost, self._writer = cost, writer
        self.skipped = skipped_of(entries)
        self.written: Commit | None = None

    @property
    def packages(self) -> dict[str, str]:
        """Third-party packages of its values, with their versions."""
        return self.origin.packages

    def detach(self) -> None:
        """Copy the bytes still pending, so the values may change before `write` runs."""
        self._writer.detach()

    def write(self) -> Commit:
        """Write the commit (its last objects in the same transaction) and move its branch.

        Raises:
            ObjectsCollected: gc took objects it needs; prepare it again.
        """
        base = self.base.written if isinstance(self.base, PreparedCommit) else self.base
        self.written = self.repo.storage.commits.write_commit(
            branch=self.branch,
            message=self.message,
            entries=self.entries,
            origin=self.origin,
            written=self._cost,
            objects=self._writer,  # its last objects go in the commit's own transaction
            base=base,
        )
        return self.written


def same_manifest(ours: Iterable[Entry], theirs: Iterable[Entry]) -> bool:
    """Whether two manifests name exactly the same stored objects (and skips)."""
    return {e.name: e.stored_as for e in ours} == {e.name: e.stored_as for e in theirs}
