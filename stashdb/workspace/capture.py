"""Capturing a namespace: pickle, hash and store each selected name, as manifest entries.

One value that cannot be pickled never fails the capture: it becomes a skipped
entry with its type and the reason. Names that share mutable objects are
pickled together (`stashdb.pickling.grouping`); the objects go to the store in
batches (`stashdb.storage.objects.ObjectWriter`). What comes out is a list of
`Entry` objects: which columns hold them is the storage layer's business.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from stashdb.model import Entry, Progress
from stashdb.pickling.fingerprint import fingerprint
from stashdb.pickling.grouping import find_groups
from stashdb.pickling.pickler import (
    Group,
    Pickled,
    Unpicklable,
    WorkspaceRefs,
    dumps,
    dumps_alias,
    is_workspace_defined,
)
from stashdb.pickling.preview import describe
from stashdb.workspace.names import MAX_NAME

if TYPE_CHECKING:
    from stashdb.storage.objects import ObjectWriter, StoredObject

__all__ = ["Capture", "Prior", "capture", "carried", "priors_after"]

#: Pickled values are handed to the store in batches of this many, or this many
#: bytes: one lookup per batch instead of one per value (1000 small values:
#: 0.17 s -> see docs/performance.md), with bounded memory.
_BATCH_OBJECTS = 256
_BATCH_BYTES = 16 * 1024 * 1024


@dataclass
class Capture:
    """Entries of a namespace, their objects already written to the store."""

    entries: list[Entry] = field(default_factory=list)
    packages: dict[str, str] = field(default_factory=dict)
    chunks_written: int = 0
    bytes_written: int = 0
    #: Fingerprints of the arrays and frames captured (`stashdb.pickling.fingerprint`):
    #: name -> (fingerprint, entry), so the next capture can carry them unpickled.
    fingerprints: dict[str, Prior] = field(default_factory=dict)
    #: Seconds spent grouping, fingerprinting and pickling (storing is the writer's).
    seconds: dict[str, float] = field(
        default_factory=lambda: {"grouping": 0.0, "fingerprinting": 0.0, "pickling": 0.0})
    #: Names proved unchanged by their fingerprint, not pickled.
    proved_unchanged: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Prior:
    """What an earlier capture stored for a name, with the fingerprint of its value then."""

    fingerprint: bytes
    entry: Entry


def _no_known_hashes(object_id: bytes) -> dict[int, str]:
    return {}


def capture(
    namespace: Mapping[str, Any],
    names: list[str],
    writer: ObjectWriter,
    known_value_hashes: Callable[[bytes], dict[int, str]] = _no_known_hashes,
    progress: Progress | None = None,
    workspace_names: Iterable[str] | None = None,
    priors: Mapping[str, Prior] | None = None,
) -> Capture:
    """Pickle, hash and store each selected name; report the ones that cannot be stored.

    One value that cannot be pickled never fails the capture: it becomes a
    skipped entry with its type and the reason.

    Args:
        namespace: where the values are.
        names: the names to store (see `stashdb.workspace.names.select_names`).
        writer: where their objects go.
        known_value_hashes: the value hashes recorded for the members of a
            group object already in the store, so an unchanged group is not
            pickled member by member again.
        progress: told how many bytes are pickled and stored, of an estimate.
        workspace_names: every name of the workspace, when only some are
            captured: classes and functions among them are referred to by name.
        priors: what an earlier capture stored for names with a fingerprint: a
            value stored alone whose fingerprint is still the same keeps that
            entry, unpickled.
    """
    refs = WorkspaceRefs.of(namespace, names if workspace_names is None else workspace_names)
    return _Capturer(namespace, names, writer, known_value_hashes, refs, progress, priors).run()


class _Capturer:
    def __init__(
        self,
        namespace: Mapping[str, Any],
        names: list[str],
        writer: ObjectWriter,
        known_value_hashes: Callable[[bytes], dict[int, str]],
        refs: WorkspaceRefs,
        progress: Progress | None = None,
        priors: Mapping[str, Prior] | None = None,
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
        #: What was stored, for the round-trip check: names, their values, the workspace
        #: names their pickle refers to (not the pickle: memory stays bounded).
        self._made: list[tuple[list[str], list[Any], frozenset[str]]] = []
        self.priors: Mapping[str, Prior] = priors or {}
        self._fingerprints: dict[str, bytes] = {}

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

        seconds = self.result.seconds
        started = time.perf_counter()
        groups = find_groups(plain)
        seconds["grouping"] += time.perf_counter() - started
        for group in groups:
            values = [plain[n] for n in group]
            if len(group) == 1 and self._unchanged(group[0], values[0]):
                done += size_hint(values[0])
                continue
            try:
                value = values[0] if len(group) == 1 else Group(tuple(group), tuple(values))
                started = time.perf_counter()
                packed = dumps(value, refs, roots=group)
                seconds["pickling"] += time.perf_counter() - started
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
        self._keep_only_restorable()

        for entry in entries:
            if entry.kind != "skipped":
                _note_package(self.result.packages, self.namespace[entry.name])
            if entry.name in self._fingerprints and entry.kind == "value" and not entry.group:
                self.result.fingerprints[entry.name] = Prior(self._fingerprints[entry.name], entry)
        entries.sort(key=lambda e: e.name)
        return self.result

    def _unchanged(self, name: str, value: Any) -> bool:
        """Whether ``value`` is proved to be what the prior capture stored (then carried).

        Fingerprints every array and frame stored alone, so the next capture
        has one to compare with.
        """
        started = time.perf_counter()
        found = fingerprint(value)
        self.result.seconds["fingerprinting"] += time.perf_counter() - started
        if found is None:
            return False
        self._fingerprints[name] = found
        prior = self.priors.get(name)
        if prior is None or prior.fingerprint != found or prior.entry.group:
            return False
        self.result.entries.append(carried(prior.entry))
        self.result.proved_unchanged.append(name)
        return True

    def store(self, names: list[str], values: list[Any], packed: Pickled) -> None:
        """Queue a pickled value (or group) for the store; written in batches."""
        self._batch.append((names, values, packed))
        self._made.append((names, values, packed.refers_to))
        self._batch_bytes += packed.size
        if len(self._batch) >= _BATCH_OBJECTS or self._batch_bytes >= _BATCH_BYTES:
            self._flush()

    def _keep_only_restorable(self) -> None:
        """Entries that could not come back are skipped with the reason, not stored as fine.

        Such a value refers to a workspace name this snapshot cannot hold (a
        class that could not be stored), or is stored as nothing but a
        reference to its own name (no other process would find it there). A
        group with one is stored again member by member. Repeated until no
        skip makes another entry unrestorable.
        """
        module = self.refs.module
        while True:
            skipped = {e.name: e.reason or "" for e in self.result.entries if e.kind == "skipped"}
            bad = [
                (names, values, why) for names, values, refers_to in self._made
                if names[0] not in skipped
                and (why := _why_not_restorable(names, refers_to, skipped, module))
            ]
            if not bad:
                return
            for names, values, why in bad:
                self._made = [m for m in self._made if m[0] is not names]
                self.result.entries = [e for e in self.result.entries if e.name not in names]
                if len(names) == 1:
                    self.result.entries.append(_skipped(names[0], values[0], why))
                    continue
                for name, value in zip(names, values):  # one may need it, another not
                    try:
                        self.store([name], [value], dumps(value, self.refs, roots=[name]))
                    except Unpicklable as exc:
                        self.result.entries.append(_skipped(name, value, exc.reason))
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
                        by_identity[id(value)] = _value_hash(
                            value, name, self.refs, self.writer.object_id_of)
                    value_hash = by_identity[id(value)]
            else:
                value_hash = stored.object_id.hex()
            self.result.entries.append(
                Entry(
                    name=name,
                    kind="value",
                    status="reused" if stored.reused else "stored",
                    object_id=stored.object_id.hex(),
                    digest=stored.digest.hex(),
                    slot=slot if grouped else None,
                    value_hash=value_hash,
                    type_name=info.type_name,
                    size=stored.raw_size,
                    stored_size=stored.stored_size,
                    seconds=packed.seconds,
                    preview=info.preview,
                    shape=info.shape,
                    literal=info.literal,
                    group=tuple(n for n in names if n != name) if grouped else (),
                )
            )


def _why_not_restorable(
    names: list[str], refers_to: frozenset[str], skipped: dict[str, str], module: str
) -> str | None:
    """Why a stored object could not come back, or None when nothing says so."""
    for name in sorted(refers_to):
        if name in names:
            return (
                f"it is stored as a reference to {module}.{name}, itself: no other process "
                "would find it there"
            )
        if name in skipped:
            return f"it needs {module}.{name}, which could not be stored ({skipped[name]})"
    return None


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


def _value_hash(
    value: Any, name: str, refs: WorkspaceRefs, ids: Callable[[str, Any], bytes]
) -> str | None:
    """The object id a group member would have stored alone, so diffs see whether *it* changed.

    Costs a second pickling of grouped values only (their buffers are hashed
    in place, not copied). For a value stored alone it is its object id.
    """
    try:
        alone = dumps(value, refs, roots=[name])
    except Unpicklable:
        return None
    return ids(alone.pickler, alone.parts).hex()


def carried(entry: Entry) -> Entry:
    """The entry of a name whose value is known not to have changed since ``entry``."""
    return replace(entry, status="skipped" if entry.kind == "skipped" else "reused")


def _skipped(name: str, value: Any, reason: str) -> Entry:
    info = describe(value)
    return Entry(
        name=name,
        kind="skipped",
        status="skipped",
        type_name=info.type_name,
        size=0,
        stored_size=0,
        seconds=0.0,
        preview=info.preview,
        shape=info.shape,
        reason=reason,
    )


def _module_entry(name: str, module: types.ModuleType) -> Entry:
    module_name = getattr(module, "__name__", None)
    if not module_name or sys.modules.get(module_name) is not module:
        return _skipped(name, module, "module is not importable by name (not in sys.modules)")
    if module_name == "__main__":
        return _skipped(name, module, "the __main__ module itself is the workspace")
    info = describe(module)
    return Entry(
        name=name,
        kind="module",
        status="reused",  # a module is a reference: nothing is written for it
        type_name="module",
        size=0,
        stored_size=0,
        seconds=0.0,
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


def priors_after(
    entries: Iterable[Entry], captured: Capture, before: Mapping[str, Prior]
) -> dict[str, Prior]:
    """The fingerprints of a snapshot: those its capture took, and those carried with it.

    A name carried unpickled keeps its fingerprint while its entry holds the
    same object; a name captured has the capture's fingerprint, or none.
    """
    own = {e.name for e in captured.entries}
    priors = {}
    for entry in entries:
        if entry.name in captured.fingerprints:
            priors[entry.name] = captured.fingerprints[entry.name]
        elif entry.name not in own and entry.name in before:
            prior = before[entry.name]
            if prior.entry.object_id == entry.object_id:
                priors[entry.name] = prior
    return priors
