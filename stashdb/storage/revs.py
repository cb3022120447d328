"""Revs: the names a user gives a commit, and how they resolve to a commit id.

A rev is ``HEAD``, a branch or tag name, a full or short (≥ 4 hex digits)
commit id, or any of those followed by ``~N`` / ``^`` (N first parents back).
The rules live here once; the read queries supply the lookups (`RevLookup`),
on whichever driver the store is read through.
"""

from __future__ import annotations

import re
from typing import Protocol

from stashdb.errors import AmbiguousRevision, RevisionNotFound
from stashdb.model import Commit, Rev

__all__ = ["MIN_SHORT_ID", "RevLookup", "looks_like_an_id", "resolve"]

#: Fewest hex digits accepted as a short commit id.
MIN_SHORT_ID = 4

_SUFFIX = re.compile(r"^(?P<base>.+?)(?P<ops>(?:~\d*|\^)+)$")
_HEX = re.compile(r"^[0-9a-f]+$")


class RevLookup(Protocol):
    """What resolving a rev needs to ask the store, inside one read transaction."""

    def head(self) -> str:
        """The current branch."""

    def ref_target(self, name: str) -> tuple[str, str] | None:
        """``(kind, commit id)`` of the branch or tag ``name``, or None."""

    def parents(self, commit_id: str) -> list[str]:
        """The commit's parents, first parent first."""

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` commit ids starting with ``prefix``, sorted."""


def resolve(rev: Rev, lookup: RevLookup) -> str:
    """The full id of the commit ``rev`` names.

    Raises:
        RevisionNotFound: nothing matches.
        AmbiguousRevision: a short id matches several commits.
    """
    if isinstance(rev, Commit):
        return rev.id
    if not isinstance(rev, str):
        raise RevisionNotFound(repr(rev), "a rev is a string or a Commit")
    rev = rev.strip()
    match = _SUFFIX.match(rev)
    if match:
        commit_id = resolve(match["base"], lookup)
        for op in re.findall(r"~\d*|\^", match["ops"]):
            steps = 1 if op in ("~", "^") else int(op[1:])
            for _ in range(steps):
                parents = lookup.parents(commit_id)
                if not parents:
                    raise RevisionNotFound(rev, f"{commit_id[:8]} has no parent")
                commit_id = parents[0]
        return commit_id
    if rev == "HEAD":
        branch = lookup.head()
        target = lookup.ref_target(branch)
        if target is None or target[0] != "branch":
            raise RevisionNotFound(rev, f"branch {branch!r} has no commits yet")
        return target[1]
    target = lookup.ref_target(rev)
    found = lookup.ids_starting_with(rev.lower(), 10) if looks_like_an_id(rev) else []
    if target is not None:
        if found and found != [target[1]]:
            # A ref that looks like a commit id (made before such names were
            # refused): never pick one of the two silently.
            raise AmbiguousRevision(rev, found, ref=target)
        return target[1]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise AmbiguousRevision(rev, found)
    raise RevisionNotFound(rev)


def looks_like_an_id(name: str) -> bool:
    """Whether ``name`` could be read as a (short) commit id: hex digits, at least 4."""
    return len(name) >= MIN_SHORT_ID and _HEX.match(name.lower()) is not None
