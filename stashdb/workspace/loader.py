"""Unpickling the entries of one snapshot, each object once, reading ahead on a thread.

The loader reads objects through the store's read side (any `ObjectSource`)
and turns them into values with `stashdb.pickling.pickler.loads`; which
values go where in a namespace is `stashdb.workspace.restore`.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Protocol

from stashdb.errors import CorruptChunk, RestoreError, TamperedData
from stashdb.model import Commit, Entry
from stashdb.pickling.pickler import group_values, loads

__all__ = ["Loader", "ObjectSource"]

#: Restores read objects of at most _PREFETCH_MAX bytes ahead, in batches.
_PREFETCH_MAX = 1024 * 1024
_PREFETCH_OBJECTS = 256
_PREFETCH_BYTES = 64 * 1024 * 1024
#: Most bytes read ahead of the values being unpickled (one larger object may be).
_READ_AHEAD_BYTES = 256 * 1024 * 1024


class ReadObject(Protocol):
    """One object as read (`stashdb.storage.chunking.Assembled`)."""

    @property
    def pickler(self) -> str: ...
    @property
    def parts(self) -> list[Any]: ...
    @property
    def digest(self) -> bytes: ...


class ObjectSource(Protocol):
    """Where a Loader reads objects: a store's `stashdb.storage.reader.Reader`."""

    def read_many(
        self, object_ids: Iterable[bytes], *, digests: bool = True
    ) -> Mapping[bytes, ReadObject | CorruptChunk]:
        """Each object's pickler, parts and digest (``digests``), or the damage found reading it."""
        ...


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
        *,
        verify: bool = False,
        safe: bool = False,
    ) -> None:
        self._chunks = chunks
        #: Compare each object's digest as read with the one the commit's signature covers.
        self._verify = verify
        #: Unpickle through the allow-list (`stashdb.pickling.safe`), never the workspace.
        self._safe = safe
        self.commit = commit
        self._entries = {e.name: e for e in commit.entries}
        self._namespace = namespace
        self._prefer_namespace = set(prefer_namespace)
        self._values: dict[str, Any] = {}
        self._objects: dict[str, Any] = {}  # object id (/name if alone) -> unpickled value
        # Read ahead on a thread (`prefetch`): object id -> size, for those not used yet.
        self._planned: dict[str, int] = {}
        self._read_ahead: dict[str, ReadObject | CorruptChunk] = {}
        self._ready = threading.Condition()
        self._ahead_bytes = 0
        self._in_flight: set[str] = set()
        self._closed = False
        self._loading: set[str] = set()
        #: Names restored only because a restored value refers to them (its class).
        self.needed: set[str] = set()

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
            if self._safe:
                from stashdb.pickling.safe import may_import

                if not may_import(entry.module or name):
                    # Importing runs the module's code: safe loading imports only known ones.
                    raise RestoreError(name, f"safe loading does not import module "
                                             f"{entry.module or name!r}; import it yourself first")
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
                if self._verify and found.digest.hex() != entry.digest:
                    raise TamperedData(
                        self.commit.id, "its stored bytes do not match the digest its signature "
                        "covers", name=entry.name,
                    )
                try:
                    self._objects[key] = self._unpickle(found.parts, entry.name)
                except (RestoreError, CorruptChunk):
                    raise
                except Exception as exc:
                    raise RestoreError(entry.name, f"{type(exc).__name__}: {exc}") from exc
            finally:
                self._loading.discard(entry.name)
        obj = self._objects[key]
        return obj if entry.slot is None else group_values(obj)[entry.slot]

    def _unpickle(self, parts: list[Any], name: str) -> Any:
        if self._safe:
            from stashdb.pickling.safe import safe_loads

            return safe_loads(parts, name=name)
        return loads(
            parts,
            module=self.commit.workspace,
            resolve=self.resolve,
            namespace=self._namespace,  # type: ignore[arg-type]
        )

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
                found = self._chunks.read_many(
                    (bytes.fromhex(oid) for oid in batch), digests=self._verify)
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

    def _read(self, object_id: str) -> ReadObject | CorruptChunk:
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
        return self._chunks.read_many([oid], digests=self._verify)[oid]

    def resolve(self, name: str) -> Any:
        """What a workspace name in a stored value refers to (a class, a function …)."""
        if name in self._prefer_namespace and name in self._namespace:
            return self._namespace[name]
        entry = self._entries.get(name)
        if entry is not None and entry.kind != "skipped":
            self.needed.add(name)
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
