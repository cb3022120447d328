"""A session's working directory as part of its state: each file one entry, ``file:<path>``.

A file's entry holds its bytes, stored and deduplicated like any value (the
same content in two files, or in two states, is stored once). A file whose
size, modification time and inode are what they were at the last snapshot
is not read again: its entry is carried over, so an unchanged directory
costs a ``stat`` per file. Files past the size limits become skipped entries
(with the reason), never silently left out. Symbolic links are not followed
(they could lead out of the directory): they are skipped, said so.

Restoring writes each file whose content differs (atomically), and removes
the files the state the directory was in held that the target lacks, and
those the code made since the last snapshot; files no state ever held are
left alone, as git leaves untracked files (but after a crash: then the
directory is made exactly the last good state's). A file name that is not a
plain path inside the directory (``file:../x``, ``file:/etc/x``: a state from
elsewhere) is neither written nor removed.
"""

from __future__ import annotations

import fnmatch
import os
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stashdb.model import Commit, Entry
from stashdb.workspace.files import write_atomically

__all__ = ["DEFAULT_IGNORE", "FILE", "FileRules", "StateView", "Workdir", "is_file_entry"]

#: Entry names of files start with this (a colon: never a Python identifier).
FILE = "file:"
#: Never part of a state: version control, caches, stores.
DEFAULT_IGNORE = (".git", ".hg", "__pycache__", "*.pyc", ".stashdb", ".ipynb_checkpoints")


def is_file_entry(name: str) -> bool:
    """Whether an entry name stands for a file of the working directory."""
    return name.startswith(FILE)


@dataclass(frozen=True)
class FileRules:
    """Which files of a working directory are stored."""

    max_file_size: int = 100 * 1024 * 1024
    max_total_size: int = 1024 * 1024 * 1024
    ignore: tuple[str, ...] = DEFAULT_IGNORE

    def ignored(self, relative: str) -> bool:
        """Whether a path (relative, with ``/``) matches an ignored pattern, or is under one."""
        parts = relative.split("/")
        return any(
            fnmatch.fnmatchcase(part, pattern) or fnmatch.fnmatchcase(relative, pattern)
            for pattern in self.ignore
            for part in parts
        )


class _NotWritten(Exception):
    """A file of a state that cannot be written here (said as a warning, the others go on)."""


class Unstorable:
    """Stands for a file that is not stored: pickling it fails with the reason (a skip)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __reduce__(self) -> Any:
        raise pickle.PicklingError(self.reason)


_Stat = tuple[int, int, int]  # size, mtime_ns, inode


def _stat_key(st: os.stat_result) -> _Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class Workdir:
    """The files of one directory, and what is known of them since the last snapshot."""

    def __init__(self, root: str | os.PathLike[str], rules: FileRules) -> None:
        self.root = Path(root).resolve()
        self.rules = rules
        #: ``{entry name: stat}`` of the files as the last snapshot or restore left them.
        self._seen: dict[str, _Stat] = {}
        self._known = False  # whether _seen says anything yet

    def scan(self) -> dict[str, os.stat_result | str]:
        """Every file of the directory by entry name: its stat, or why it is not stored."""
        found: dict[str, os.stat_result | str] = {}
        total = 0
        for relative, st in sorted(self._walk()):
            name = FILE + relative
            if isinstance(st, str):
                found[name] = st
            elif st.st_size > self.rules.max_file_size:
                found[name] = (
                    f"the file has {st.st_size:,} bytes, more than the session's "
                    f"max_file_size of {self.rules.max_file_size:,}"
                )
            elif total + st.st_size > self.rules.max_total_size:
                found[name] = (
                    f"the directory's files pass the session's max_total_size of "
                    f"{self.rules.max_total_size:,} bytes"
                )
            else:
                total += st.st_size
                found[name] = st
        return found

    def _walk(self) -> Iterator[tuple[str, os.stat_result | str]]:
        stack = [self.root]
        while stack:
            folder = stack.pop()
            try:
                listing = list(os.scandir(folder))
            except OSError as exc:
                yield os.path.relpath(folder, self.root).replace(os.sep, "/"), str(exc)
                continue
            for item in listing:
                relative = os.path.relpath(item.path, self.root).replace(os.sep, "/")
                if self.rules.ignored(relative):
                    continue
                if item.is_symlink():
                    yield relative, "a symbolic link: not followed, not stored"
                elif item.is_dir():
                    stack.append(Path(item.path))
                elif item.is_file():
                    yield relative, item.stat()

    def changes(self, scanned: Mapping[str, os.stat_result | str]) -> set[str]:
        """Entry names whose files changed, appeared or went since the last snapshot."""
        changed = {
            name for name, st in scanned.items()
            if isinstance(st, str) or self._seen.get(name) != _stat_key(st)
        }
        return changed | (self._seen.keys() - scanned.keys())

    def snapshotted(self, scanned: Mapping[str, os.stat_result | str]) -> None:
        """The files are as ``scanned`` says in the snapshot just made."""
        self._seen = {n: _stat_key(st) for n, st in scanned.items() if not isinstance(st, str)}
        self._known = True

    def read(self, name: str, st: os.stat_result | str) -> bytes | Unstorable:
        """The bytes of file ``name`` (an `Unstorable` when it cannot be stored or read)."""
        if isinstance(st, str):
            return Unstorable(st)
        try:
            return self._path(name).read_bytes()
        except (OSError, _NotWritten) as exc:
            return Unstorable(f"the file could not be read: {exc}")

    def restore(
        self,
        target: Commit,
        current: Commit | None,
        values: Mapping[str, Any],
        *,
        exact: bool = False,
    ) -> list[str]:
        """Make the directory hold ``target``'s files; returns the warnings.

        Removed: the files of ``current`` (the state the directory was in) that
        the target lacks, and the files made since the last snapshot (the
        session's own unsaved writes, when it is known which). With ``exact``
        (after a crash) every file the target lacks goes; without, files no
        state ever held are left alone, as git leaves untracked files.
        ``values`` gives a file entry's bytes when read.
        """
        warnings: list[str] = []
        wanted = {e.name: e for e in target.entries if is_file_entry(e.name)}
        held = {e.name: e for e in current.entries if is_file_entry(e.name)} if current else {}
        scanned = self.scan()
        for name, entry in wanted.items():
            if entry.kind == "skipped":
                continue  # not stored: whatever is on disk stays
            if self._unchanged(name, entry, held, scanned):
                continue
            try:
                self._write(name, values[name])
            except Exception as exc:  # one file must not stop the others
                warnings.append(f"file {name[len(FILE):]} was not restored: {exc}")
        gone = {n for n, e in held.items() if n not in wanted and e.kind != "skipped"}
        if exact:
            gone |= {n for n in scanned if n not in wanted}
        elif self._known:
            gone |= {n for n in scanned if n not in wanted and n not in held
                     and n not in self._seen}
        for name in sorted(gone):
            try:
                path = self._path(name)
                if path.is_symlink() or path.is_file():
                    path.unlink()
            except (OSError, _NotWritten) as exc:
                warnings.append(f"file {name[len(FILE):]} was not removed: {exc}")
        self.snapshotted(self.scan())
        return warnings

    def _unchanged(
        self, name: str, entry: Entry, held: Mapping[str, Entry], scanned: Mapping[str, Any]
    ) -> bool:
        """The file on disk is the one ``held`` recorded, and that is the target's content."""
        before = held.get(name)
        st = scanned.get(name)
        return (
            before is not None
            and before.stored_as == entry.stored_as
            and st is not None and not isinstance(st, str)
            and self._seen.get(name) == _stat_key(st)
        )

    def _path(self, name: str) -> Path:
        """Where file entry ``name`` lives; refused unless plainly inside the directory.

        A state from elsewhere (a bundle, a store someone else writes) may
        name ``file:/etc/x`` or ``file:../x``, or a directory here may be a
        link out: such a name is neither written nor removed.
        """
        relative = name[len(FILE):]
        parts = relative.split("/")
        if (
            not relative or "\\" in relative or "\0" in relative
            or any(part in ("", ".", "..") for part in parts)
        ):
            raise _NotWritten("its path is not a plain path inside the working directory")
        path = self.root.joinpath(*parts)
        if not path.parent.resolve().is_relative_to(self.root):
            raise _NotWritten("its path leads out of the working directory")
        return path

    def _write(self, name: str, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray)):
            raise _NotWritten(f"its entry holds a {type(data).__name__}, not bytes")
        path = self._path(name)
        if path.is_symlink():
            path.unlink()  # replaced by the file, never written through
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.resolve().is_relative_to(self.root):
            raise _NotWritten("its path leads out of the working directory")

        def write(temporary: str) -> None:
            Path(temporary).write_bytes(data)

        write_atomically(path, write)


class StateView(Mapping[str, Any]):
    """A namespace and a working directory's files, as one mapping for a snapshot.

    A file's bytes are read only when the snapshot asks for them: an
    unchanged file is never read.
    """

    def __init__(
        self, namespace: Mapping[str, Any], workdir: Workdir,
        scanned: Mapping[str, os.stat_result | str],
    ) -> None:
        self._namespace = namespace
        self._workdir = workdir
        self._scanned = scanned

    def __getitem__(self, name: str) -> Any:
        if name in self._scanned:
            return self._workdir.read(name, self._scanned[name])
        return self._namespace[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._namespace
        yield from self._scanned

    def __len__(self) -> int:
        return len(self._namespace) + len(self._scanned)

    def __contains__(self, name: object) -> bool:
        return name in self._scanned or name in self._namespace
