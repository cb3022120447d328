"""The "file" of a drop-in replacement: a stashdb store at that path, or an old pickle file.

`sessionstash` and `dill_session` save to a path as the tools they replace
do, but what they write there is a store (one SQLite file), so each save is a
commit and saving again writes only what changed. A path that holds an old
dill or sessionstash pickle still loads (`stashdb.workspace.dillfiles`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stashdb.errors import StoreWriteError

if TYPE_CHECKING:
    from stashdb.model import CheckoutReport, Commit
    from stashdb.repo import Repo

__all__ = [
    "dunder",
    "find_store",
    "is_sqlite",
    "loaded_names",
    "open_for_saving",
    "warn_not_restored",
    "warn_skipped",
]

#: How every SQLite database file begins (sqlite.org/fileformat.html, "Magic Header String").
SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite(path: Path) -> bool:
    """Whether ``path`` is a SQLite database file (a store, or some other database)."""
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def open_for_saving(path: str | os.PathLike[str]) -> Repo:
    """The store to save to at ``path``, created there if need be.

    A directory means its ``.stashdb/`` store (made if missing). A file that
    is not a SQLite database (an old dill or sessionstash pickle) is replaced
    by a new store, as dill and sessionstash overwrite their files; a SQLite
    file that is not a store is refused (`NotAStore`), never overwritten.

    Raises:
        StoreWriteError: the directory the file would go in does not exist.
        NotAStore: the path holds some other SQLite database.
    """
    import stashdb
    from stashdb.repo import Repo
    from stashdb.storage.sqlite_driver import sqlite_url

    file = Path(os.fspath(path))
    if file.is_dir():
        return stashdb.open(file, create=True)
    if file.exists() and not is_sqlite(file):
        file.unlink()
    if file.exists():
        return stashdb.open(file)
    if not file.parent.is_dir():
        raise StoreWriteError(str(file), f"there is no directory {file.parent}")
    Repo.open(sqlite_url(file), create=True, location=str(file)).close()
    repo = stashdb.open(file)
    # A Repo this process kept for an earlier file at this path (deleted since)
    # holds connections to that file: closed, they reopen on the new one.
    repo.close()
    return repo


def find_store(path: str | os.PathLike[str]) -> Repo | None:
    """The store at ``path`` to load from; None when ``path`` is not one (a pickle file?).

    Raises:
        NotAStore: a directory without a store, or a SQLite file that is not one.
    """
    import stashdb

    file = Path(os.fspath(path))
    if file.is_dir() or is_sqlite(file):
        return stashdb.open(file)
    return None


def dunder(name: str) -> bool:
    """``__name__``, ``__builtins__`` …: a module's own names, which a load never copies over."""
    return name.startswith("__") and name.endswith("__")


def warn_skipped(
    commit: Commit, path: object, category: type[Warning], *, stacklevel: int
) -> None:
    """One warning naming every value ``commit`` skipped, with why; none if it skipped none."""
    if commit.skipped:
        listed = "; ".join(f"{s.name} ({s.type_name}): {s.reason}" for s in commit.skipped)
        count = len(commit.skipped)
        warnings.warn(
            f"{count} value{'s' if count > 1 else ''} not saved in {path} "
            f"(the others were): {listed}",
            category, stacklevel=stacklevel + 1,
        )


def warn_not_restored(report: CheckoutReport, path: object, *, stacklevel: int) -> None:
    """One warning naming every value that could not be restored here, with why."""
    if report.failed:
        listed = "; ".join(f"{f.name}: {f.reason}" for f in report.failed)
        warnings.warn(
            f"not restored from {path} (left as they were): {listed}", UserWarning,
            stacklevel=stacklevel + 1,
        )


def loaded_names(loaded: dict[str, Any]) -> dict[str, Any]:
    """The names of an old pickle file a load copies into a namespace (not its dunders)."""
    return {name: value for name, value in loaded.items() if not dunder(name)}
