"""The module-level API: ``stashdb.commit()``, ``stashdb.checkout()`` and friends.

Each function finds the store (``repo=``, or ``.stashdb/`` found by walking up
from the current directory) and calls the `Repo` method of the same name.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Union

from stashdb.errors import NotAStore, StoreNotFound
from stashdb.model import CheckoutReport, Commit, Diff, Rev, Version
from stashdb.refs import Ref
from stashdb.repo import Repo, Snapshot

__all__ = [
    "STORE_DIR",
    "STORE_FILE",
    "at",
    "branch",
    "checkout",
    "commit",
    "diff",
    "find_store",
    "history",
    "init",
    "log",
    "open",
    "show",
    "tag",
]

#: The directory that marks a store, like ``.git``.
STORE_DIR = ".stashdb"
#: The SQLite database inside it.
STORE_FILE = "stash.db"

RepoLike = Union[Repo, str, "os.PathLike[str]", None]

_open_repos: dict[str, Repo] = {}


def _is_url(text: str) -> bool:
    return "://" in text


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def find_store(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``.stashdb/stash.db`` in ``start`` (default: the current directory) or above it."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / STORE_DIR / STORE_FILE
        if candidate.is_file():
            return candidate
    return None


def _cached(url: str, *, create: bool, location: str) -> Repo:
    repo = _open_repos.get(url)
    if repo is None:
        repo = Repo.open(url, create=create, location=location)
        _open_repos[url] = repo
    return repo


def init(path: str | os.PathLike[str] = ".") -> Repo:
    """Create a store in ``path/.stashdb/`` (or a database URL) and return it.

    Opening an existing store is not an error: you get that store.
    """
    text = os.fspath(path)
    if _is_url(text):
        return _cached(text, create=True, location=text)
    directory = Path(text)
    store_dir = directory / STORE_DIR
    if directory.is_file():
        raise NotAStore(str(directory), "it is a file; stashdb.init() takes a directory")
    store_dir.mkdir(parents=True, exist_ok=True)
    db = store_dir / STORE_FILE
    return _cached(_sqlite_url(db), create=True, location=str(store_dir.resolve()))


def open(repo: RepoLike = None, *, create: bool = False) -> Repo:
    """The store named by ``repo``: a Repo, a directory, a SQLite file, or a database URL.

    With ``repo=None`` the store is found by walking up from the current
    directory; with ``create`` a new one is made in the current directory when
    none is found (and that is said once, on stderr).

    Raises:
        StoreNotFound: no store was found and ``create`` is false.
        NotAStore: the path or URL holds something else.
    """
    if isinstance(repo, Repo):
        return repo
    if repo is None:
        found = find_store()
        if found is None:
            if not create:
                raise StoreNotFound(str(Path.cwd()))
            made = init(Path.cwd())
            print(f"stashdb: created a new store in {made.location}", file=sys.stderr)
            return made
        # create: a store file another process is still creating gets waited for.
        return _cached(_sqlite_url(found), create=create, location=str(found.parent))
    text = os.fspath(repo)
    if _is_url(text):
        return _cached(text, create=create, location=text)
    path = Path(text)
    if path.is_dir():
        if path.name == STORE_DIR and (path / STORE_FILE).is_file():
            path = path.parent
        db = path / STORE_DIR / STORE_FILE
        if not db.is_file():
            if create:
                return init(path)
            why = f"it has no {STORE_DIR}/{STORE_FILE}; run stashdb.init() there"
            raise NotAStore(str(path), why)
        return _cached(_sqlite_url(db), create=False, location=str(db.parent))
    if path.is_file():
        return _cached(_sqlite_url(path), create=False, location=str(path))
    if create:
        return init(path)
    raise NotAStore(str(path), "no such file or directory")


def _caller_globals() -> dict[str, Any]:
    # Two frames up: the user's code called a function of this module.
    return sys._getframe(2).f_globals


def commit(
    message: str = "",
    *,
    namespace: Mapping[str, Any] | None = None,
    repo: RepoLike = None,
    branch: str | None = None,
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Commit:
    """Snapshot a namespace (default: the caller's globals). See `Repo.commit`.

    Without ``repo``, commits to the store found from the current directory,
    creating ``./.stashdb/`` on first use.
    """
    ns = namespace if namespace is not None else _caller_globals()
    return open(repo, create=True).commit(
        message, namespace=ns, branch=branch, only=only, exclude=exclude
    )


def checkout(
    rev: Rev = "HEAD",
    *,
    only: Iterable[str] | None = None,
    namespace: MutableMapping[str, Any] | None = None,
    repo: RepoLike = None,
    merge: bool = False,
) -> CheckoutReport:
    """Restore a snapshot into a namespace (default: the caller's globals). See `Repo.checkout`."""
    ns = namespace if namespace is not None else _caller_globals()
    return open(repo).checkout(rev, only=only, namespace=ns, merge=merge)


def log(
    *, repo: RepoLike = None, branch: str | None = None, limit: int | None = None, all: bool = False
) -> list[Commit]:
    """Commits, newest first. See `Repo.log`."""
    return open(repo).log(branch=branch, limit=limit, all=all)


def show(rev: Rev = "HEAD", *, repo: RepoLike = None) -> Commit:
    """One commit with its entries. See `Repo.show`."""
    return open(repo).show(rev)


def diff(a: Rev, b: Rev = "HEAD", *, repo: RepoLike = None) -> Diff:
    """What changed from ``a`` to ``b``. See `Repo.diff`."""
    return open(repo).diff(a, b)


def tag(name: str, rev: Rev = "HEAD", *, repo: RepoLike = None, message: str | None = None) -> Ref:
    """Tag a commit. See `Repo.tag`."""
    return open(repo).tag(name, rev, message=message)


def branch(name: str, rev: Rev = "HEAD", *, repo: RepoLike = None) -> Ref:
    """Start a branch. See `Repo.branch`."""
    return open(repo).branch(name, rev)


def at(rev: Rev = "HEAD", *, repo: RepoLike = None) -> Snapshot:
    """A lazy read-only mapping of a snapshot. See `Repo.at`."""
    return open(repo).at(rev)


def history(name: str, *, repo: RepoLike = None, branch: str | None = None) -> list[Version]:
    """The versions of one variable. See `Repo.history`."""
    return open(repo).history(name, branch=branch)
