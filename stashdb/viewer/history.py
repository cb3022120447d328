"""What each page of the viewer shows, read from a store's metadata only.

`History` wraps one `Repo` for the server: every page's data in one call,
under one lock (the server's worker threads share the Repo), with what never
changes memoised (a commit's change counts: commits are immutable). Nothing
here unpickles a value or writes to the store; it calls only the Repo's read
methods (log, lineage, show, diff, history, touching, change_counts, stats).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from stashdb.model import (
    ChangeCounts,
    Commit,
    Diff,
    Entry,
    Ref,
    StoreStats,
    Version,
    stored_objects,
)
from stashdb.render.layout import GraphRow, graph_layout
from stashdb.repo import Repo
from stashdb.trust.policy import Signer

__all__ = ["GraphPage", "History", "SpaceUse", "Timeline"]

_T = TypeVar("_T")

#: Commits per page of the graph: a page's change counts cost ~2 ms a commit
#: on a 1,000-variable history, so a page stays well inside 300 ms.
PAGE = 50
#: Lanes drawn; a wider graph is clipped at the right (the commits still show).
MAX_LANES = 16


@dataclass(frozen=True)
class GraphPage:
    """One page of the commit list, with the graph drawn across it."""

    commits: list[Commit]
    rows: list[GraphRow | None]  # None when the list is filtered (no graph then)
    counts: dict[str, ChangeCounts]
    tips: dict[str, list[str]]  # commit id -> branches whose tip it is
    signers: dict[str, Signer]
    total: int
    page: int
    pages: int
    branch: str | None
    name: str | None
    branches: list[Ref]
    head: str
    lanes: int  # how many lanes the widest row of this page has (at most MAX_LANES)


@dataclass(frozen=True)
class Timeline:
    """A variable's versions along a branch, newest first, and the points of its plot."""

    name: str
    branch: str
    versions: list[Version]
    points: list[dict[str, object]]  # oldest first: commit, time, size, stored size


@dataclass(frozen=True)
class SpaceUse:
    """What takes the space: one snapshot's objects, by variable and by type."""

    commit: Commit
    objects: list[tuple[list[str], str, int, int]]  # names, type, pickled size, stored size
    by_type: list[tuple[str, int, int]]  # type, count, stored size
    stats: StoreStats | None = None
    skipped: list[Entry] = field(default_factory=list)


class History:
    """The read side of one store, for the viewer's pages."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._lock = threading.RLock()
        self._counts: dict[str, ChangeCounts] = {}
        self._stats: tuple[str, StoreStats] | None = None
        self._names: tuple[str, list[str]] | None = None
        self._layouts: dict[tuple[str | None, str], tuple[list[str], list[GraphRow]]] = {}

    def _read(self, read: Callable[[], _T]) -> _T:
        with self._lock:  # re-entrant: a page's read may ask for the state
            return read()

    def state(self) -> str:
        """A token that changes whenever a ref is added, moved or deleted (for live pages).

        Every commit lands on a branch, so a new commit always moves one.
        """

        def read() -> str:
            refs = [*self.repo.branches(), *self.repo.tags()]
            text = ",".join(f"{r.kind}:{r.name}={r.commit_id}" for r in refs)
            return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

        return self._read(read)

    def _drawn(self, branch: str | None, state: str) -> tuple[list[str], list[GraphRow]]:
        """The ids of the log and its layout, kept while the refs stay where they are."""
        key = (branch, state)
        if key not in self._layouts:
            ids, parents = self.repo.lineage(branch=branch, all=branch is None)
            self._layouts = {key: (ids, graph_layout(ids, parents))}  # one kept: the newest
        return self._layouts[key]

    def graph(
        self, *, branch: str | None = None, name: str | None = None, page: int = 1,
        per_page: int = PAGE,
    ) -> GraphPage:
        """A page of the log of every ref (or of ``branch``), or of the commits touching ``name``.

        Raises:
            RefNotFound: ``branch`` is not a branch.
        """

        def read() -> GraphPage:
            ids, layout = self._drawn(branch, self.state())
            rows: list[GraphRow | None]
            if name:
                ids = self.repo.touching(name, ids)
            pages = max(1, -(-len(ids) // per_page))
            number = min(max(page, 1), pages)
            start = (number - 1) * per_page
            if name:
                rows = [None] * min(per_page, max(0, len(ids) - start))
            else:
                # The whole history is laid out (ids only) so a page's lanes are right.
                rows = list(layout[start : start + per_page])
            commits = self.repo.commits(ids[start : start + per_page])
            branches = self.repo.branches()
            tips: dict[str, list[str]] = {}
            for ref in branches:
                tips.setdefault(ref.commit_id, []).append(ref.name)
            drawn = [r for r in rows if r is not None]
            return GraphPage(
                commits=commits,
                rows=rows,
                counts=self._change_counts(commits),
                tips=tips,
                signers=self.repo.signers(commits),
                total=len(ids),
                page=number,
                pages=pages,
                branch=branch,
                name=name or None,
                branches=branches,
                head=self.repo.head,
                lanes=min(MAX_LANES, max((len(r.lanes) for r in drawn), default=0)),
            )

        return self._read(read)

    def _change_counts(self, commits: Sequence[Commit]) -> dict[str, ChangeCounts]:
        todo = [c for c in commits if c.id not in self._counts]
        if todo:
            self._counts.update(self.repo.change_counts(todo))
        return {c.id: self._counts[c.id] for c in commits}

    def commit(self, rev: str) -> tuple[Commit, Signer | None, ChangeCounts]:
        """One commit with every entry, who signed it, and what it changed."""

        def read() -> tuple[Commit, Signer | None, ChangeCounts]:
            commit = self.repo.show(rev)
            return commit, self.repo.signers([commit]).get(commit.id), self._change_counts(
                [commit]
            )[commit.id]

        return self._read(read)

    def diff(self, a: str, b: str) -> Diff:
        """How ``b`` differs from ``a``."""
        return self._read(lambda: self.repo.diff(a, b))

    def timeline(self, name: str, branch: str | None = None) -> Timeline:
        """The versions of ``name`` along ``branch`` (default: the current one)."""

        def read() -> Timeline:
            on = branch or self.repo.head
            versions = self.repo.history(name, branch=on)
            points = [
                {
                    "commit": v.commit.short_id,
                    "time": v.commit.time.isoformat(timespec="seconds"),
                    "size": v.entry.size if v.entry is not None else 0,
                    "stored": v.entry.stored_size if v.entry is not None else 0,
                }
                for v in reversed(versions)
            ]
            return Timeline(name, on, versions, points)

        return self._read(read)

    def branches(self) -> list[Ref]:
        """Every branch, sorted by name."""
        return self._read(self.repo.branches)

    def names(self) -> list[str]:
        """The names in the newest snapshot (for the filter's suggestions), kept per state."""

        def read() -> list[str]:
            state = self.state()
            if self._names is None or self._names[0] != state:
                ids, _ = self._drawn(None, state)
                names = [e.name for e in self.repo.show(ids[0]).entries] if ids else []
                self._names = (state, names)
            return self._names[1]

        return self._read(read)

    def space(self, rev: str = "HEAD") -> SpaceUse:
        """What each object of ``rev`` takes (names sharing one object are one row)."""

        def read() -> SpaceUse:
            commit = self.repo.show(rev)
            ordered = stored_objects(commit.entries)
            by_type: dict[str, tuple[int, int]] = {}
            for _, type_name, _, stored in ordered:
                count, total = by_type.get(type_name, (0, 0))
                by_type[type_name] = (count + 1, total + stored)
            types = sorted(((t, n, s) for t, (n, s) in by_type.items()), key=lambda r: -r[2])
            cached = self._stats
            return SpaceUse(commit, ordered, types,
                            stats=cached[1] if cached is not None else None,
                            skipped=[e for e in commit.entries if e.skipped])

        return self._read(read)

    def stats(self) -> StoreStats:
        """The whole store's counts and sizes (a scan of every manifest: kept per state)."""
        state = self.state()
        cached = self._stats
        if cached is not None and cached[0] == state:
            return cached[1]
        stats = self._read(self.repo.stats)
        self._stats = (state, stats)
        return stats
