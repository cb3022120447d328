"""Workspaces: capture a namespace into stored entries, and restore entries into one.

This layer knows Python objects; `stashdb.store` and `stashdb.chunks` below it
know only rows and bytes.
"""

from __future__ import annotations

import fnmatch
import functools
import getpass
import importlib
import json
import platform
import socket
import sys
import threading
import types
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from stashdb.chunking import object_id_of
from stashdb.errors import (
    CorruptChunk,
    NameNotInNamespace,
    RestoreError,
    VersionMismatchWarning,
)
from stashdb.model import Commit, Entry
from stashdb.preview import describe

if TYPE_CHECKING:
    from stashdb.chunks import ObjectWriter, StoredObject

from stashdb.serialize import (
    Group,
    Pickled,
    Unpicklable,
    WorkspaceRefs,
    dumps,
    dumps_alias,
    find_groups,
    group_values,
    is_workspace_defined,
    loads,
)

__all__ = [
    "IPYTHON_NAMES",
    "Capture",
    "Loader",
    "Progress",
    "capture",
    "carried_row",
    "environment",
    "excluded_by_default",
    "select_names",
    "shell_names",
    "version_warnings",
]

#: Names IPython puts in a user namespace; never committed unless asked for by name.
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
#: Longest name a manifest holds (the entries.name column).
MAX_NAME = 255
#: Restores read objects of at most _PREFETCH_MAX bytes ahead, in batches.
_PREFETCH_MAX = 1024 * 1024
_PREFETCH_OBJECTS = 256
_PREFETCH_BYTES = 64 * 1024 * 1024
#: Most bytes read ahead of the values being unpickled (one larger object may be).
_READ_AHEAD_BYTES = 256 * 1024 * 1024
#: Pickled values are handed to the store in batches of this many, or this many
#: bytes: one lookup per batch instead of one per value (1000 small values:
#: 0.17 s -> see docs/performance.md), with bounded memory.
_BATCH_OBJECTS = 256
_BATCH_BYTES = 16 * 1024 * 1024


def excluded_by_default(name: str, hidden: Collection[str] = ()) -> bool:
    """``_``-prefixed names (``__builtins__``, IPython's ``_i1`` …) and IPython's own."""
    return name.startswith("_") or name in IPYTHON_NAMES or name in hidden


def shell_names(namespace: Mapping[str, Any]) -> set[str]:
    """Names a running IPython shell put in ``namespace`` itself (its ``user_ns_hidden``).

    Covers what the static list cannot (IPython 8 adds its own ``open``), and
    only while they still hold IPython's objects: a user's own ``open`` counts.
    IPython is consulted only when it is already imported.
    """
    ipython = sys.modules.get("IPython")
    get_shell = getattr(ipython, "get_ipython", None)
    shell = get_shell() if get_shell is not None else None
    if shell is None or getattr(shell, "user_ns", None) is not namespace:
        return set()
    hidden = getattr(shell, "user_ns_hidden", {})
    return {n for n, v in hidden.items() if n in namespace and namespace[n] is v}


def select_names(
    namespace: Mapping[str, Any],
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[str]:
    """The names of ``namespace`` a commit stores, sorted.

    ``only`` and ``exclude`` are glob patterns. A default-excluded name is
    committed only when ``only`` names it exactly.

    Raises:
        NameNotInNamespace: an ``only`` pattern matches nothing.
    """
    only_list = [only] if isinstance(only, str) else list(only or [])
    exclude_list = [exclude] if isinstance(exclude, str) else list(exclude or [])
    hidden = shell_names(namespace)
    names = []
    unmatched = set(only_list)
    for name in namespace:
        if not isinstance(name, str):
            continue
        if only_list:
            hits = [p for p in only_list if p == name or fnmatch.fnmatchcase(name, p)]
            unmatched.difference_update(hits)
            if not hits or (excluded_by_default(name, hidden) and name not in only_list):
                continue
        elif excluded_by_default(name, hidden):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude_list):
            continue
        names.append(name)
    if unmatched:
        raise NameNotInNamespace(sorted(unmatched))
    return sorted(names)


# -- commit ------------------------------------------------------------------------


@dataclass
class Capture:
    """Entries of a namespace, their objects already written to the store."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)
    chunks_written: int = 0
    bytes_written: int = 0


def _no_known_hashes(object_id: bytes) -> dict[int, str]:
    return {}


#: Called as ``progress(done_bytes, total_bytes)`` while values are stored or
#: restored. A commit's total is an estimate (a value's size is known only once
#: it is pickled) and grows if the work turns out larger.
Progress = Callable[[int, int], None]


def capture(
    namespace: Mapping[str, Any],
    names: list[str],
    writer: ObjectWriter,
    known_value_hashes: Callable[[bytes], dict[int, str]] = _no_known_hashes,
    progress: Progress | None = None,
    workspace_names: Iterable[str] | None = None,
) -> Capture:
    """Pickle, hash and store each selected name; report the ones that cannot be stored.

    One value that cannot be pickled never fails the capture: it becomes a
    skipped entry with its type and the reason.

    Args:
        namespace: where the values are.
        names: the names to store (see `select_names`).
        writer: where their objects go.
        known_value_hashes: the value hashes recorded for the members of a
            group object already in the store, so an unchanged group is not
            pickled member by member again.
        progress: told how many bytes are pickled and stored, of an estimate.
        workspace_names: every name of the workspace, when only some are
            captured: classes and functions among them are referred to by name.
    """
    refs = WorkspaceRefs.of(namespace, names if workspace_names is None else workspace_names)
    return _Capturer(namespace, names, writer, known_value_hashes, refs, progress).run()


class _Capturer:
    def __init__(
        self,
        namespace: Mapping[str, Any],
        names: list[str],
        writer: ObjectWriter,
        known_value_hashes: Callable[[bytes], dict[int, str]],
        refs: WorkspaceRefs,
        progress: Progress | None = None,
    ) -> None:
        self.progress = progress or (lambda done, total: None)
        self.namespace = namespace
        self.names = names
        self.writer = writer
        self.known_value_hashes = known_value_hashes
        self.refs = refs
        self.result = Capture()
        self._batch: list[tuple[list[str], list[Any], Pickled]] = []
        self._batch_bytes = 0

    def run(self) -> Capture:
        refs, entries = self.refs, self.result.entries
        plain: dict[str, Any] = {}
        for name in self.names:
            value = self.namespace[name]
            if len(name) > MAX_NAME:
                entries.append(_skipped(name, value, f"name longer than {MAX_NAME} characters"))
            elif isinstance(value, types.ModuleType):
                entries.append(_module_entry(name, value))
            elif is_workspace_defined(value, refs.module) and refs.by_name.get(id(value)) not in (
                None,
                name,
            ):
                # `P = Point`: store a reference, so that after checkout `P is Point`.
                self.store([name], [value], dumps_alias(refs.by_name[id(value)]))
            else:
                plain[name] = value
        total = sum(size_hint(v) for v in plain.values())
        done = 0
        self.progress(done, total)

        for group in find_groups(plain):
            values = [plain[n] for n in group]
            try:
                value = values[0] if len(group) == 1 else Group(tuple(group), tuple(values))
                packed = dumps(value, refs, roots=group)
            except Unpicklable as exc:
                if len(group) == 1:
                    entries.append(_skipped(group[0], values[0], exc.reason))
                    continue
                # One bad member must not sink its group: store the others on their own.
                for name, value in zip(group, values):
                    try:
                        alone = dumps(value, refs, roots=[name])
                    except Unpicklable as member_exc:
                        entries.append(_skipped(name, value, member_exc.reason))
                    else:
                        self.store([name], [value], alone)
                continue
            self.store(group, values, packed)
            done += packed.size
            total = max(total, done)
            self.progress(done, total)
        self._flush()

        for entry in entries:
            if entry["kind"] != "skipped":
                _note_package(self.result.packages, self.namespace[entry["name"]])
        entries.sort(key=lambda e: e["name"])
        return self.result

    def store(self, names: list[str], values: list[Any], packed: Pickled) -> None:
        """Queue a pickled value (or group) for the store; written in batches."""
        self._batch.append((names, values, packed))
        self._batch_bytes += packed.size
        if len(self._batch) >= _BATCH_OBJECTS or self._batch_bytes >= _BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if not batch:
            return
        stored_objects = self.writer.put_many([(p.pickler, p.parts) for _, _, p in batch])
        for (names, values, packed), stored in zip(batch, stored_objects):
            self._record(names, values, packed, stored)

    def _record(
        self, names: list[str], values: list[Any], packed: Pickled, stored: StoredObject
    ) -> None:
        self.result.chunks_written += stored.chunks_written
        self.result.bytes_written += stored.bytes_written
        grouped = len(names) > 1
        known = self.known_value_hashes(stored.object_id) if stored.reused and grouped else {}
        by_identity: dict[int, str | None] = {}  # `b = a`: one value, hashed once
        for slot, (name, value) in enumerate(zip(names, values)):
            info = describe(value)
            if grouped:
                value_hash = known.get(slot)
                if value_hash is None:
                    if id(value) not in by_identity:
                        by_identity[id(value)] = _value_hash(value, name, self.refs)
                    value_hash = by_identity[id(value)]
            else:
                value_hash = stored.object_id.hex()
            self.result.entries.append(
                _row(
                    name,
                    kind="value",
                    status="reused" if stored.reused else "stored",
                    object_id=stored.object_id,
                    slot=slot if grouped else None,
                    value_hash=value_hash,
                    type_name=info.type_name,
                    size=stored.raw_size,
                    stored_size=stored.stored_size,
                    seconds=packed.seconds,
                    preview=info.preview,
                    shape=info.shape,
                    literal=info.literal,
                )
            )


def size_hint(value: Any) -> int:
    """A cheap guess of a value's pickled size, for progress: its buffer for arrays
    and frames, its shallow size otherwise."""
    try:
        nbytes = getattr(value, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
        usage = getattr(value, "memory_usage", None)
        if callable(usage) and type(value).__module__.startswith("pandas"):
            return int(usage(deep=False).sum())
        return sys.getsizeof(value)
    except Exception:  # a value's own attributes may raise anything
        return 0


def _value_hash(value: Any, name: str, refs: WorkspaceRefs) -> str | None:
    """The object id a group member would have stored alone, so diffs see whether *it* changed.

    Costs a second pickling of grouped values only (their buffers are hashed
    in place, not copied). For a value stored alone it is its object id.
    """
    try:
        alone = dumps(value, refs, roots=[name])
    except Unpicklable:
        return None
    return object_id_of(alone.pickler, alone.parts).hex()


def carried_row(entry: Entry) -> dict[str, Any]:
    """The entry row of a name whose value is known not to have changed since ``entry``."""
    return _row(
        entry.name,
        kind=entry.kind,
        status="skipped" if entry.kind == "skipped" else "reused",
        object_id=bytes.fromhex(entry.object_id) if entry.object_id else None,
        slot=entry.slot,
        value_hash=entry.value_hash,
        type_name=entry.type_name,
        size=entry.size,
        stored_size=entry.stored_size,
        seconds=entry.seconds,
        preview=entry.preview,
        shape=entry.shape,
        literal=entry.literal,
        reason=entry.reason,
        module=entry.module,
        version=entry.version,
    )


def _row(name: str, **fields: Any) -> dict[str, Any]:
    row = dict.fromkeys(
        ("object_id", "slot", "value_hash", "shape", "literal", "reason", "module", "version")
    )
    row.update(name=name, size=0, stored_size=0, seconds=0.0)
    row.update(fields)
    return row


def _skipped(name: str, value: Any, reason: str) -> dict[str, Any]:
    info = describe(value)
    return _row(
        name,
        kind="skipped",
        status="skipped",
        type_name=info.type_name,
        preview=info.preview,
        shape=info.shape,
        reason=reason,
    )


def _module_entry(name: str, module: types.ModuleType) -> dict[str, Any]:
    module_name = getattr(module, "__name__", None)
    if not module_name or sys.modules.get(module_name) is not module:
        return _skipped(name, module, "module is not importable by name (not in sys.modules)")
    if module_name == "__main__":
        return _skipped(name, module, "the __main__ module itself is the workspace")
    info = describe(module)
    return _row(
        name,
        kind="module",
        status="reused",  # a module is a reference: nothing is written for it
        type_name="module",
        preview=info.preview,
        module=module_name,
        version=_version_of(module),
    )


def _version_of(module: Any) -> str | None:
    version = getattr(module, "__version__", None)
    return str(version) if version is not None else None


def _note_package(packages: dict[str, str], value: Any) -> None:
    module = value.__name__ if isinstance(value, types.ModuleType) else type(value).__module__
    top = (module or "").split(".")[0]
    if not top or top in packages or top in ("builtins", "__main__"):
        return
    if top in sys.stdlib_module_names:
        return
    version = _version_of(sys.modules.get(top))
    if version is not None:
        packages[top] = version


def environment(workspace: str) -> dict[str, Any]:
    """Who and where a commit is made: user, host, Python and dill versions."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name (some containers)
        user = "unknown"
    return {
        "workspace": workspace,
        "user": user,
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "dill": _dill_version(),
    }


@functools.cache
def _dill_version() -> str:
    # dill's own attribute when it is loaded; otherwise the package metadata,
    # without importing dill (~40 ms) just to learn its version (~20 ms, once).
    dill = sys.modules.get("dill")
    if dill is not None and getattr(dill, "__version__", None):
        return str(dill.__version__)
    from importlib.metadata import version

    return version("dill")


def packages_json(packages: dict[str, str]) -> str:
    return json.dumps(dict(sorted(packages.items())))


# -- checkout --------------------------------------------------------------------------


class ObjectSource(Protocol):
    """Where a Loader reads objects: `stashdb.chunks.ChunkStore` or the light SQLite reader."""

    def read_many(
        self, object_ids: Iterable[bytes]
    ) -> dict[bytes, tuple[str, list[Any]] | CorruptChunk]: ...


class Loader:
    """Unpickles the entries of one commit, each object at most once.

    Args:
        chunks: where the objects are.
        commit: the snapshot, with its entries.
        namespace: the globals that restored functions are bound to.
        prefer_namespace: names that the namespace, not the snapshot, supplies
            when a restored value refers to them (a partial checkout leaves
            the namespace's classes in place, so instances are of those).
    """

    def __init__(
        self,
        chunks: ObjectSource,
        commit: Commit,
        namespace: MutableMapping[str, Any],
        prefer_namespace: Iterable[str] = (),
    ) -> None:
        self._chunks = chunks
        self.commit = commit
        self._entries = {e.name: e for e in commit.entries}
        self._namespace = namespace
        self._prefer_namespace = set(prefer_namespace)
        self._values: dict[str, Any] = {}
        self._objects: dict[str, Any] = {}  # object id (/name if alone) -> unpickled value
        # Read ahead on a thread (`prefetch`): object id -> size, for those not used yet.
        self._planned: dict[str, int] = {}
        self._read_ahead: dict[str, tuple[str, list[Any]] | CorruptChunk] = {}
        self._ready = threading.Condition()
        self._ahead_bytes = 0
        self._in_flight: set[str] = set()
        self._closed = False
        self._loading: set[str] = set()

    def load(self, name: str) -> Any:
        """The value of ``name`` in the snapshot.

        Raises:
            KeyError: the snapshot has no such name.
            RestoreError: it was skipped at commit, or cannot be unpickled here.
            CorruptChunk: its stored bytes are damaged (names the variable).
        """
        if name in self._values:
            return self._values[name]
        entry = self._entries[name]
        if entry.kind == "skipped":
            raise RestoreError(name, f"it was skipped at commit: {entry.reason}")
        if entry.kind == "module":
            try:
                value = importlib.import_module(entry.module or name)
            except Exception as exc:
                raise RestoreError(name, f"cannot import module {entry.module!r}: {exc}") from exc
        else:
            value = self._load_value(entry)
        self._values[name] = value
        return value

    def _load_value(self, entry: Entry) -> Any:
        assert entry.object_id is not None
        # A group's members share one unpickled object; two names stored alone
        # whose values were merely equal (one object id) must not.
        key = entry.object_id if entry.slot is not None else f"{entry.object_id}/{entry.name}"
        if key not in self._objects:
            if entry.name in self._loading:
                raise RestoreError(entry.name, "it refers to itself while being restored")
            self._loading.add(entry.name)
            try:
                found = self._read(entry.object_id)
                if isinstance(found, CorruptChunk):
                    raise found.for_name(entry.name)
                _, parts = found
                try:
                    self._objects[key] = loads(
                        parts,
                        module=self.commit.workspace,
                        resolve=self.resolve,
                        namespace=self._namespace,  # type: ignore[arg-type]
                    )
                except (RestoreError, CorruptChunk):
                    raise
                except Exception as exc:
                    raise RestoreError(entry.name, f"{type(exc).__name__}: {exc}") from exc
            finally:
                self._loading.discard(entry.name)
        obj = self._objects[key]
        return obj if entry.slot is None else group_values(obj)[entry.slot]

    def prefetch(self, names: Iterable[str]) -> None:
        """Read the objects of ``names`` ahead, in that order, on a background thread.

        Reading (the database driver releases the GIL while it reads) then
        overlaps with unpickling the values already read, and with the
        imports that unpickling triggers. Small objects are read in batches of at most 256
        objects and 64 MiB: restoring 1000 small values is dominated by
        per-object queries. At most 256 MiB (or one larger object) is held
        ahead of the caller. Objects not planned here are read when needed.
        """
        batches: list[list[str]] = []
        small: list[str] = []
        small_bytes = 0
        for name in names:
            entry = self._entries.get(name)
            if entry is None or entry.object_id is None or entry.object_id in self._planned:
                continue
            self._planned[entry.object_id] = entry.size
            if entry.size > _PREFETCH_MAX:
                batches.append([entry.object_id])
                continue
            if len(small) >= _PREFETCH_OBJECTS or small_bytes + entry.size > _PREFETCH_BYTES:
                small, small_bytes = [], 0
            if not small:
                batches.append(small)
            small.append(entry.object_id)
            small_bytes += entry.size
        if batches:
            thread = threading.Thread(
                target=self._read_batches, args=(batches,), name="stashdb-read-ahead", daemon=True
            )
            thread.start()

    def _read_batches(self, batches: list[list[str]]) -> None:
        for planned in batches:
            with self._ready:
                # Bounded memory: wait while enough is read and not yet used.
                self._ready.wait_for(functools.partial(self._may_read, planned))
                if self._closed:
                    return
                # Objects the loader took back (it needed them sooner) are not read here.
                batch = [oid for oid in planned if oid in self._planned]
                size = sum(self._planned[oid] for oid in batch)
                self._in_flight = set(batch)
            try:
                found = self._chunks.read_many(bytes.fromhex(oid) for oid in batch)
            except Exception:
                # Give this batch back: the loader reads each of its objects
                # itself when it needs it, and the error (if it lasts) is
                # that name's alone. Later batches go on.
                with self._ready:
                    for oid in batch:
                        self._planned.pop(oid, None)
                    self._in_flight = set()
                    self._ready.notify_all()
                continue
            with self._ready:
                self._read_ahead.update((oid.hex(), value) for oid, value in found.items())
                self._ahead_bytes += size
                self._in_flight = set()
                self._ready.notify_all()

    def _may_read(self, batch: list[str]) -> bool:
        size = sum(self._planned.get(oid, 0) for oid in batch)
        held = self._ahead_bytes
        return self._closed or not held or held + size <= _READ_AHEAD_BYTES

    def close(self) -> None:
        """Stop reading ahead (the objects already read are dropped)."""
        with self._ready:
            self._closed = True
            self._read_ahead.clear()
            self._ready.notify_all()

    def _read(self, object_id: str) -> tuple[str, list[Any]] | CorruptChunk:
        with self._ready:
            if object_id in self._in_flight:  # being read: wait for it (no deadlock: it runs)
                self._ready.wait_for(lambda: object_id not in self._in_flight)
            if object_id in self._read_ahead:
                self._ahead_bytes -= self._planned.pop(object_id)
                self._ready.notify_all()
                return self._read_ahead.pop(object_id)
            # Not read yet: take it back from the plan and read it now, here.
            self._planned.pop(object_id, None)
        oid = bytes.fromhex(object_id)
        return self._chunks.read_many([oid])[oid]

    def resolve(self, name: str) -> Any:
        """What a workspace name in a stored value refers to (a class, a function …)."""
        if name in self._prefer_namespace and name in self._namespace:
            return self._namespace[name]
        entry = self._entries.get(name)
        if entry is not None and entry.kind != "skipped":
            return self.load(name)
        if name in self._namespace:
            return self._namespace[name]
        main = sys.modules.get("__main__")
        if main is not None and hasattr(main, name):
            return getattr(main, name)
        raise RestoreError(
            name,
            f"it refers to {self.commit.workspace}.{name}, which is neither in snapshot "
            f"{self.commit.short_id} nor in the namespace",
        )


def version_warnings(commit: Commit) -> list[str]:
    """Differences between the Python/dill that wrote ``commit`` and the running ones."""
    found = []
    ours = platform.python_version()
    if commit.python.split(".")[:2] != ours.split(".")[:2]:
        found.append(
            f"snapshot {commit.short_id} was written by Python {commit.python}, this is {ours}"
        )
    # dill's version matters only for values dill unpickled; when dill is not
    # loaded in this process there were none (and looking it up costs ~30 ms).
    dill = _dill_version() if "dill" in sys.modules else commit.dill
    if commit.dill != dill:
        found.append(
            f"snapshot {commit.short_id} was written with dill {commit.dill}, this is {dill}"
        )
    for message in found:
        warnings.warn(message, VersionMismatchWarning, stacklevel=4)
    return found
