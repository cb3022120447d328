"""Refs: branches (move on commit) and tags (fixed), and HEAD, the current branch.

Branches and tags share one namespace, so a name always means one thing in a
rev. A branch moves only by compare-and-swap (`move_branch`), last in the
write order (format rule 2).
"""

from __future__ import annotations

import re
import time

from sqlalchemy import Connection, select, update

from stashdb.db import schema
from stashdb.errors import RefExists, RefNotFound, StashError
from stashdb.model import Ref
from stashdb.revs import DEFAULT_BRANCH

__all__ = ["DEFAULT_BRANCH", "InvalidRefName", "Ref", "Refs"]


_VALID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,254}$")


class InvalidRefName(StashError):
    """A branch or tag name that could not be told apart from a rev."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"{name!r} is not a valid branch or tag name: use letters, digits, '_', '-', '.', '/' "
            "(not starting with '-'), and not HEAD"
        )


def check_name(name: str) -> None:
    if not _VALID.match(name) or name == "HEAD" or name.endswith((".", "/")) or ".." in name:
        raise InvalidRefName(name)


class Refs:
    """Branches, tags and HEAD of a store. Methods take an open connection."""

    def head(self, conn: Connection) -> str:
        """The current branch."""
        value = conn.execute(
            select(schema.meta.c.value).where(schema.meta.c.key == "HEAD")
        ).scalar()
        return value or DEFAULT_BRANCH

    def set_head(self, conn: Connection, branch: str) -> None:
        conn.execute(
            update(schema.meta).where(schema.meta.c.key == "HEAD").values(value=branch)
        )

    def find(self, conn: Connection, name: str) -> Ref | None:
        row = conn.execute(select(schema.refs).where(schema.refs.c.name == name)).first()
        return Ref(row.name, row.kind, row.commit_id, row.message, row.time) if row else None

    def get(self, conn: Connection, name: str, kind: str) -> Ref:
        ref = self.find(conn, name)
        if ref is None or ref.kind != kind:
            raise RefNotFound(kind, name)
        return ref

    def tip(self, conn: Connection, branch: str) -> str | None:
        """The commit a branch points at, or None for a branch with no commits yet."""
        ref = self.find(conn, branch)
        return ref.commit_id if ref is not None and ref.kind == "branch" else None

    def list(self, conn: Connection, kind: str | None = None) -> list[Ref]:
        query = select(schema.refs).order_by(schema.refs.c.name)
        if kind is not None:
            query = query.where(schema.refs.c.kind == kind)
        return [Ref(r.name, r.kind, r.commit_id, r.message, r.time) for r in conn.execute(query)]

    def create(
        self, conn: Connection, kind: str, name: str, commit_id: str, message: str | None = None
    ) -> Ref:
        check_name(name)
        existing = self.find(conn, name)
        if existing is not None:
            raise RefExists(existing.kind, name, existing.commit_id)
        ref = Ref(name, kind, commit_id, message, time.time())
        conn.execute(
            schema.refs.insert().values(
                name=name, kind=kind, commit_id=commit_id, message=message, time=ref.time
            )
        )
        return ref

    def delete(self, conn: Connection, kind: str, name: str) -> Ref:
        ref = self.get(conn, name, kind)
        conn.execute(schema.refs.delete().where(schema.refs.c.name == name))
        return ref

    def move_branch(self, conn: Connection, name: str, old: str | None, new: str) -> bool:
        """Point branch ``name`` at ``new`` if it still points at ``old`` (None: absent).

        Returns False when another writer moved it first; the caller retries.
        """
        if old is None:
            if self.find(conn, name) is not None:
                return False
            conn.execute(
                schema.refs.insert().values(
                    name=name, kind="branch", commit_id=new, message=None, time=time.time()
                )
            )
            return True
        result = conn.execute(
            update(schema.refs)
            .where(schema.refs.c.name == name, schema.refs.c.commit_id == old)
            .values(commit_id=new, time=time.time())
        )
        return result.rowcount == 1
