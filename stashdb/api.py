"""The module-level API: ``stashdb.commit()``, ``stashdb.checkout()`` and friends.

Each function finds the store (``repo=``, or ``.stashdb/`` found by walking up
from the current directory) and calls the `Repo` method of the same name.
Stores opened here are kept open for the process (one `Repo` per store, so its
writes stay in order); a child made by ``fork()`` opens its own, and
`close_all` closes them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from stashdb.errors import NotAStore, StoreNotFound
from stashdb.model import CheckoutReport, Commit, Diff, Progress, Ref, Rev, Transfer, Version
from stashdb.repo import Repo, Snapshot
from stashdb.storage.format import DEFAULT_LOCK_TIMEOUT
from stashdb.storage.sqlite_driver import sqlite_url

__all__ = [
    "STORE_DIR",
    "STORE_FILE",
    "at",
    "branch",
    "checkout",
    "clone",
    "close_all",
    "commit",
    "diff",
    "find_store",
    "history",
    "init",
    "log",
    "migrate",
    "open",
    "show",
    "store_url",
    "tag",
]

#: The directory that marks a store, like ``.git``.
STORE_DIR = ".stashdb"
#: The SQLite database inside it.
STORE_FILE = "stash.db"
#: The environment variable naming the store when none is given (a path or a URL).
STORE_ENV = "STASHDB_URL"

RepoLike = Union[Repo, str, "os.PathLike[str]", None]

#: The stores this process has opened, by URL, and the process that opened them.
_open_repos: dict[str, Repo] = {}
_opened_by = os.getpid()


def _is_url(text: str) -> bool:
    return "://" in text


def find_store(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The ``.stashdb/stash.db`` in ``start`` (default: the current directory) or above it."""
    here = Path(start if start is not None else Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / STORE_DIR / STORE_FILE
        if candidate.is_file():
            return candidate
    return None


def _cached(
    url: str, *, create: bool, location: str | None, lock_timeout: float | None = None
) -> Repo:
    global _opened_by
    if _opened_by != os.getpid():
        # A forked child: the parent's Repos (their connections, their writer
        # thread) are the parent's. Forget them without closing anything.
        _open_repos.clear()
        _opened_by = os.getpid()
    repo = _open_repos.get(url)
    if repo is None:
        repo = Repo.open(
            url, create=create, location=location,
            lock_timeout=DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
        )
        _open_repos[url] = repo
    elif lock_timeout is not None:
        repo.lock_timeout = lock_timeout
    return repo


def close_all() -> None:
    """Close every store this process opened through the API (writes in flight finish first).

    The next call opens them again. Useful in tests, and before handing the
    process's files to someone else.
    """
    repos = list(_open_repos.values()) if _opened_by == os.getpid() else []
    _open_repos.clear()
    for repo in repos:
        repo.close()


def init(
    path: str | os.PathLike[str] = ".", *, lock_timeout: float | None = None,
    encrypt: bool = False,
) -> Repo:
    """Create a store in ``path/.stashdb/`` (or a database URL) and return it.

    Opening an existing store is not an error: you get that store.
    ``lock_timeout``: as for `open`. ``encrypt``: a new store whose chunks and
    value descriptions are sealed under a store key kept in your key
    directory (`Repo.encrypt`; docs/security.md).

    Raises:
        InvalidArguments: ``encrypt`` for a store that holds commits already.
    """
    repo = _init(path, lock_timeout)
    if encrypt:
        repo.encrypt()
    return repo


def _init(path: str | os.PathLike[str], lock_timeout: float | None) -> Repo:
    text = os.fspath(path)
    if _is_url(text):  # the URL, password masked
        return _cached(text, create=True, location=None, lock_timeout=lock_timeout)
    directory = Path(text)
    if directory.is_file():
        raise NotAStore(str(directory), "it is a file; stashdb.init() takes a directory")
    store_dir = directory / STORE_DIR
    store_dir.mkdir(parents=True, exist_ok=True)
    db = store_dir / STORE_FILE
    return _cached(
        sqlite_url(db), create=True, location=str(store_dir.resolve()), lock_timeout=lock_timeout
    )


def _locate(repo: str | os.PathLike[str] | None) -> tuple[str, str | None] | None:
    """``(url, location)`` of an existing store named by ``repo``; None if there is none.

    Raises:
        NotAStore: ``repo`` names a path that exists but holds no store.
    """
    if repo is None:
        found = find_store()
        return (sqlite_url(found), str(found.parent)) if found is not None else None
    text = os.fspath(repo)
    if _is_url(text):
        return text, None  # the Repo masks the password when it needs a location
    path = Path(text)
    if path.is_dir():
        if path.name == STORE_DIR and (path / STORE_FILE).is_file():
            path = path.parent
        db = path / STORE_DIR / STORE_FILE
        if db.is_file():
            return sqlite_url(db), str(db.parent)
        why = f"it has no {STORE_DIR}/{STORE_FILE}; run stashdb.init() there"
        raise NotAStore(str(path), why)
    if path.is_file():
        return sqlite_url(path), str(path)
    return None


def open(
    repo: RepoLike = None, *, create: bool = False, lock_timeout: float | None = None
) -> Repo:
    """The store named by ``repo``: a Repo, a directory, a SQLite file, or a database URL.

    With ``repo=None`` the store is ``$STASHDB_URL`` when that is set, else the
    one found by walking up from the current directory; with ``create`` a new
    one is made (in the current directory, or the directory given) when none is
    found, and that is said once, on stderr.

    Args:
        lock_timeout: seconds a write waits while another process holds the
            store's write lock before `StoreLocked` (default: 300).

    Raises:
        StoreNotFound: no store was found and ``create`` is false.
        NotAStore: the path or URL holds something else.
    """
    if isinstance(repo, Repo):
        if lock_timeout is not None:
            repo.lock_timeout = lock_timeout
        return repo
    if repo is None or os.fspath(repo) == "":
        # As for the command line and the IPython extension (docs/postgres.md).
        repo = os.environ.get(STORE_ENV) or None
    try:
        located = _locate(repo)
    except NotAStore:
        if not create:
            raise
        located = None
    if located is not None:
        url, location = located
        # create: a store another process is still creating gets waited for.
        return _cached(url, create=create, location=location, lock_timeout=lock_timeout)
    if not create:
        if repo is None:
            raise StoreNotFound(str(Path.cwd()))
        raise NotAStore(os.fspath(repo), "no such file or directory")
    made = init(Path.cwd() if repo is None else repo, lock_timeout=lock_timeout)
    if repo is None:
        print(f"stashdb: created a new store in {made.location}", file=sys.stderr)
    return made


def store_url(repo: str | os.PathLike[str]) -> str:
    """The database URL of the existing store named by a directory, a file or a URL.

    Raises:
        NotAStore: nothing there is a store.
    """
    located = _locate(repo)
    if located is None:
        raise NotAStore(os.fspath(repo), "no such file or directory")
    return located[0]


def clone(
    source: str | os.PathLike[str], path: str | os.PathLike[str] = ".", *, lazy: bool = False,
    progress: Progress | None = None,
) -> tuple[Repo, Transfer]:
    """Copy the store ``source`` (a directory, file or URL) into a new store at ``path``.

    The copy's remote ``origin`` is ``source``; every branch and tag comes
    along. ``lazy`` copies commits and manifests only: each value's data is
    fetched when it is first checked out (and kept). ``path`` may be a
    database URL too.

    Raises:
        NotAStore, StoreUnreachable: ``source`` is not a store that opens.
        InvalidArguments: ``path`` holds a store with commits already.
    """
    url = store_url(source)
    repo = init(path)
    return repo, repo.clone_from(url, lazy=lazy, progress=progress)


@dataclass(frozen=True)
class Migration:
    """What `migrate` did: the schema revision before and after."""

    location: str
    before: str | None
    after: str | None

    def __str__(self) -> str:
        if self.before == self.after:
            return f"{self.location} is at schema revision {self.after}: nothing to do"
        return f"upgraded {self.location} from schema revision {self.before} to {self.after}"


def migrate(
    repo: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None
) -> Migration:
    """Upgrade a store's schema to the newest revision this stashdb knows.

    Opening a store upgrades it anyway; this does it explicitly and says what
    changed. ``lock_timeout``: as for `open`. Raises like `open`.
    """
    from stashdb.storage.engine import open_database, schema_revision, upgrade

    if repo is None or os.fspath(repo) == "":
        repo = os.environ.get(STORE_ENV) or None
    located = _locate(repo)
    if located is None:
        raise StoreNotFound(str(Path.cwd())) if repo is None else NotAStore(
            os.fspath(repo), "no such file or directory"
        )
    url, location = located
    database = open_database(
        url, create=False, location=location, upgrade_schema=False,
        lock_timeout=DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
    )
    try:
        before = schema_revision(database)
        upgrade(database)
        return Migration(database.location, before, schema_revision(database))
    finally:
        database.dispose()
        stale = _open_repos.pop(url, None)
        if stale is not None:
            stale.close()


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
    trust: bool = False,
    safe: bool = False,
) -> CheckoutReport:
    """Restore a snapshot into a namespace (default: the caller's globals). See `Repo.checkout`."""
    ns = namespace if namespace is not None else _caller_globals()
    return open(repo).checkout(rev, only=only, namespace=ns, merge=merge, trust=trust, safe=safe)


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


def at(
    rev: Rev = "HEAD", *, repo: RepoLike = None, trust: bool = False, safe: bool = False
) -> Snapshot:
    """A lazy read-only mapping of a snapshot. See `Repo.at`."""
    return open(repo).at(rev, trust=trust, safe=safe)


def history(name: str, *, repo: RepoLike = None, branch: str | None = None) -> list[Version]:
    """The versions of one variable. See `Repo.history`."""
    return open(repo).history(name, branch=branch)
