"""Value objects that stashdb hands back: commits, entries, diffs, reports."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

__all__ = [
    "Change",
    "ChangeCounts",
    "CheckoutReport",
    "Commit",
    "Diff",
    "Entry",
    "Failure",
    "Origin",
    "Progress",
    "Ref",
    "Rev",
    "SignReport",
    "Skipped",
    "SnapshotCost",
    "StoreStats",
    "Version",
    "format_size",
    "link_groups",
    "skipped_of",
    "stored_objects",
]


@dataclass(frozen=True)
class Entry:
    """One name of a snapshot, with what is known about it without unpickling."""

    name: str
    kind: str  # "value", "module" or "skipped"
    status: str  # at commit time: "stored" (written), "reused" (unchanged) or "skipped"
    type_name: str
    size: int  # pickled bytes of its object (a group's object is shared by its names)
    stored_size: int  # bytes its object takes in the store
    seconds: float  # time it took to pickle its object
    preview: str
    shape: str | None = None
    literal: str | None = None  # exact repr of a small built-in value
    reason: str | None = None  # why it was skipped
    module: str | None = None  # module entries: the module re-imported on checkout
    version: str | None = None  # module entries: its version when committed
    object_id: str | None = None  # hex id of the stored object
    slot: int | None = None  # index in its group, None when stored alone
    value_hash: str | None = None  # object id it would have stored alone (sees group members)
    group: tuple[str, ...] = ()  # the other names sharing its object
    digest: str | None = None  # hex BLAKE3 digest of its object, as signed (None: before 0005)

    @property
    def skipped(self) -> bool:
        """Whether the name could not be stored (see ``reason``)."""
        return self.kind == "skipped"

    @property
    def stored_as(self) -> tuple[str, str | None, int | None, str | None]:
        """What the manifest records for this name: kind, object, slot, module.

        Equal for two entries exactly when restoring them gives the same object
        (a group member: the same group), not merely an equal value.
        """
        return (self.kind, self.object_id, self.slot, self.module)

    def same_value(self, other: Entry) -> bool:
        """Whether both entries hold the same stored value (no unpickling)."""
        if self.kind != other.kind:
            return False
        if self.kind == "module":
            return self.module == other.module
        if self.kind == "skipped":
            return self.type_name == other.type_name and self.reason == other.reason
        if self.value_hash is not None and other.value_hash is not None:
            return self.value_hash == other.value_hash
        return self.object_id == other.object_id and self.slot == other.slot


@dataclass(frozen=True)
class Origin:
    """Where a commit is made: the namespace, who, which machine, which Python and dill."""

    workspace: str  # the namespace's __name__
    user: str
    host: str
    python: str
    dill: str
    packages: dict[str, str]  # third-party package of a stored value -> its version


@dataclass(frozen=True)
class Skipped:
    """A name that was not stored, and why."""

    name: str
    type_name: str
    reason: str


@dataclass(frozen=True)
class Commit:
    """A snapshot: its manifest of entries plus who, when, where and from what."""

    id: str
    message: str
    parents: tuple[str, ...]
    time: datetime
    branch: str
    workspace: str
    user: str
    host: str
    python: str
    dill: str
    packages: dict[str, str]
    chunks_written: int
    bytes_written: int
    entries: tuple[Entry, ...] = ()
    tags: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        """The first 8 hex digits of the id, as ``log`` shows it."""
        return self.id[:8]

    @property
    def names(self) -> list[str]:
        """Every name of the snapshot, sorted."""
        return [e.name for e in self.entries]

    def entry(self, name: str) -> Entry:
        """The entry of ``name``; raises KeyError if the snapshot has none."""
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    @property
    def stored(self) -> list[str]:
        """Names whose values were written by this commit."""
        return [e.name for e in self.entries if e.status == "stored"]

    @property
    def reused(self) -> list[str]:
        """Names whose values were already in the store: nothing written."""
        return [e.name for e in self.entries if e.status == "reused"]

    @property
    def skipped(self) -> list[Skipped]:
        """Names that could not be stored, with their type and the reason."""
        return skipped_of(self.entries)

    def summary(self) -> list[str]:
        """What committing it did, as lines of text (the command line and IPython show these)."""
        lines = [
            f"[{self.branch} {self.short_id}] {self.message or '(no message)'}",
            f"stored {len(self.stored)}, reused {len(self.reused)}, "
            f"skipped {len(self.skipped)}; {format_size(self.bytes_written)} written "
            f"in {self.chunks_written} chunks",
        ]
        lines += [f"  skipped {s.name} ({s.type_name}): {s.reason}" for s in self.skipped]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.summary())


@dataclass(frozen=True)
class Change:
    """How one name differs between two snapshots."""

    name: str
    status: str  # "added", "removed", "changed" or "unchanged"
    old: Entry | None
    new: Entry | None

    @property
    def old_value(self) -> str | None:
        """Exact repr of the old value, for small built-ins."""
        return self.old.literal if self.old else None

    @property
    def new_value(self) -> str | None:
        """Exact repr of the new value, for small built-ins."""
        return self.new.literal if self.new else None


@dataclass(frozen=True)
class Diff:
    """Names added, removed, changed and unchanged between commit ``a`` and ``b``."""

    a: Commit
    b: Commit
    changes: tuple[Change, ...]

    def _with(self, status: str) -> list[Change]:
        return [c for c in self.changes if c.status == status]

    @property
    def added(self) -> list[Change]:
        """Names only ``b`` has."""
        return self._with("added")

    @property
    def removed(self) -> list[Change]:
        """Names only ``a`` has."""
        return self._with("removed")

    @property
    def changed(self) -> list[Change]:
        """Names whose value differs."""
        return self._with("changed")

    @property
    def unchanged(self) -> list[Change]:
        """Names whose value is the same in both."""
        return self._with("unchanged")

    def __bool__(self) -> bool:
        return any(c.status != "unchanged" for c in self.changes)

    def __str__(self) -> str:
        lines = [f"diff {self.a.short_id} → {self.b.short_id}"]
        for c in self.changes:
            if c.status == "unchanged":
                continue
            mark = {"added": "+", "removed": "-", "changed": "~"}[c.status]
            if c.old is not None and c.new is not None:
                size = f"{format_size(c.old.size)} → {format_size(c.new.size)}"
                before = _clip(c.old_value or c.old.preview)
                shown = f"{before} → {_clip(c.new_value or c.new.preview)}"
                lines.append(f"{mark} {c.name} ({c.new.type_name}, {size}): {shown}")
            else:
                entry = c.new or c.old
                assert entry is not None
                shown = _clip(entry.literal or entry.preview)
                size = format_size(entry.size)
                lines.append(f"{mark} {c.name} ({entry.type_name}, {size}): {shown}")
        if len(lines) == 1:
            lines.append("  (no differences)")
        return "\n".join(lines)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_size(n: int) -> str:
    """Bytes for people: ``512 B``, ``1.5 kB``, ``80.0 MB`` (powers of 1000)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@dataclass(frozen=True)
class Failure:
    """A name that could not be restored, and why."""

    name: str
    reason: str


@dataclass
class CheckoutReport:
    """What a checkout did to the namespace."""

    commit: Commit
    restored: list[str] = field(default_factory=list)
    #: Names deleted so that the namespace equals the snapshot.
    removed: list[str] = field(default_factory=list)
    #: Names whose value already was the snapshot's: left in memory, not reloaded.
    kept: list[str] = field(default_factory=list)
    #: Names restored too because restored values need them (the class of an instance).
    needed: list[str] = field(default_factory=list)
    #: Names the snapshot could not store: left as they are in the namespace.
    skipped: list[Skipped] = field(default_factory=list)
    #: Names that could not be restored here: left as they are in the namespace.
    failed: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every name asked for was restored."""
        return not self.failed

    def summary(self, title: str | None = None) -> list[str]:
        """The report as lines of text: one of counts, then one per name left as it was.

        The command line and the IPython extension show exactly these lines.
        """
        parts = [f"restored {len(self.restored)}{_listing(self.restored)}"]
        if self.needed:
            parts.append(f"and {_listing(self.needed).strip(' ()')}, which they need")
        if self.kept:
            parts.append(f"kept {len(self.kept)} unchanged in memory")
        if self.removed:
            parts.append(f"removed {len(self.removed)}{_listing(self.removed)}")
        lines = [f"{title or f'checked out {self.commit.short_id}'}: " + "; ".join(parts)]
        lines += [
            f"  skipped at commit, left as is: {s.name} ({s.type_name}): {s.reason}"
            for s in self.skipped
        ]
        lines += [f"  not restored, left as is: {f.name}: {f.reason}" for f in self.failed]
        lines += [f"  warning: {w}" for w in self.warnings]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.summary())


def _listing(names: list[str], most: int = 8) -> str:
    if not names:
        return ""
    more = ", …" if len(names) > most else ""
    return f" ({', '.join(names[:most])}{more})"


@dataclass(frozen=True)
class Version:
    """One version of a variable: the commit where it took this value."""

    commit: Commit
    status: str  # "added", "changed" or "removed"
    entry: Entry | None  # None when the name was removed in this commit


@dataclass(frozen=True)
class ChangeCounts:
    """How many names a commit added, changed and removed against its first parent."""

    added: int
    changed: int
    removed: int


@dataclass(frozen=True)
class StoreStats:
    """Sizes and counts of a whole store (metadata only)."""

    commits: int
    branches: int
    tags: int
    objects: int
    chunks: int
    raw_bytes: int  # the chunks' uncompressed bytes: everything stored, once
    stored_bytes: int  # what the chunks take in the database
    logical_bytes: int  # what every snapshot holds, counted per snapshot, uncompressed

    @property
    def dedup_ratio(self) -> float:
        """Logical bytes over stored bytes: how much deduplication and compression save."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 1.0


#: Called as ``progress(done_bytes, total_bytes)`` while values are stored or
#: restored. A commit's total is an estimate (a value's size is known only once
#: it is pickled) and grows if the work turns out larger.
Progress = Callable[[int, int], None]

#: Anything that names a commit: a rev string (id, short id, tag, branch, HEAD,
#: REV~N) or a `Commit`.
Rev = str | Commit


@dataclass(frozen=True)
class Ref:
    """A branch or a tag, and the commit it points at."""

    name: str
    kind: str  # "branch" or "tag"
    commit_id: str
    message: str | None
    time: float


@dataclass(frozen=True)
class RefChange:
    """What moving history did to one ref (of the store that received it)."""

    name: str
    kind: str  # "branch", "tag" or "remote" (a remote-tracking ref: origin/main)
    old: str | None  # the commit it pointed at before (None: it is new)
    new: str | None  # the commit it points at now (None: deleted)
    what: str  # "new", "moved", "forced", "up to date" or "kept"
    why: str = ""  # for "kept": why it did not move

    def __str__(self) -> str:
        old, new = (self.old or "")[:12], (self.new or "")[:12]
        shown = {"new": f"new {self.kind} at {new}", "moved": f"{old} → {new}",
                 "forced": f"{old} → {new} (forced)", "up to date": f"up to date at {new}",
                 "kept": f"kept at {old}: {self.why}"}[self.what]
        return f"{self.name}: {shown}"


@dataclass
class Transfer:
    """What moving history (push, pull, fetch, clone, import) added to a store."""

    commits: int = 0
    objects: int = 0
    chunks: int = 0
    bytes: int = 0  # stored bytes of the chunks sent
    refs: list[RefChange] = field(default_factory=list)

    def add(self, other: Transfer) -> None:
        """Count ``other`` in too."""
        self.commits += other.commits
        self.objects += other.objects
        self.chunks += other.chunks
        self.bytes += other.bytes
        self.refs += other.refs

    def __str__(self) -> str:
        if not (self.commits or self.objects or self.chunks):
            sent = "nothing new to send"
        else:
            sent = (f"{self.commits} commits, {self.objects} objects, {self.chunks} chunks "
                    f"({format_size(self.bytes)})")
        return "\n".join([sent, *(str(r) for r in self.refs)])


def stored_objects(entries: Iterable[Entry]) -> list[tuple[list[str], str, int, int]]:
    """``(names, type, pickled size, stored size)`` per stored object, largest stored first.

    Names sharing one object (a group) are one row: its bytes are there once
    (what ``stashdb du`` and the viewer's store page show).
    """
    objects: dict[str, tuple[list[str], str, int, int]] = {}
    for e in entries:
        if e.object_id is None:
            continue
        names, type_name, size, stored = objects.get(
            e.object_id, ([], e.type_name, e.size, e.stored_size)
        )
        objects[e.object_id] = ([*names, e.name], type_name, size, stored)
    return sorted(objects.values(), key=lambda o: o[3], reverse=True)


def skipped_of(entries: Iterable[Entry]) -> list[Skipped]:
    """The entries that could not be stored, with their type and the reason."""
    return [Skipped(e.name, e.type_name, e.reason or "") for e in entries if e.skipped]


def link_groups(entries: Iterable[Entry]) -> list[Entry]:
    """The entries with ``group`` set: the other names that share each one's object."""
    entries = list(entries)
    members: dict[str, list[str]] = {}
    for e in entries:
        if e.slot is not None and e.object_id is not None:
            members.setdefault(e.object_id, []).append(e.name)
    linked = []
    for e in entries:
        names = members.get(e.object_id or "", []) if e.slot is not None else []
        group = tuple(n for n in names if n != e.name)
        linked.append(e if e.group == group else replace(e, group=group))
    return linked


@dataclass(frozen=True)
class SignReport:
    """What `Repo.sign_all` did."""

    signed: list[str]  # ids of the commits signed now
    lacking: list[str]  # commits left unsigned: a value of theirs has no digest (damaged)
    digested: int  # objects given a digest first
    unreadable: list[str]  # objects that could not be digested (a chunk missing or damaged)

    def __str__(self) -> str:
        text = f"signed {len(self.signed)} commits"
        if self.digested:
            text += f" (digested {self.digested} objects stored before signing)"
        if self.lacking:
            text += (f"; {len(self.lacking)} commits hold values that cannot be read back "
                     "and stay unsigned: run `stashdb verify`")
        return text


@dataclass(frozen=True)
class SnapshotCost:
    """What one automatic snapshot cost, and where (``%stash status``, ``stashdb status``).

    ``in_cell`` is all the user waited for: working out what the cell could
    have changed, and starting the snapshot (a ``fork``). The rest happened off
    the user's path, in a child process (``background="fork"``) or on the
    writer thread (``"thread"``, where the pickling is in ``in_cell`` too).
    """

    background: str  # "fork" or "thread"
    in_cell: float  # seconds the cell waited: tracking plus starting the snapshot
    waited: float = 0.0  # seconds it waited for the snapshot before it to land
    fingerprinting: float = 0.0  # proving arrays and frames unchanged, by hashing
    grouping: float = 0.0  # finding the names that share objects
    pickling: float = 0.0
    hashing: float = 0.0  # chunk ids and digests
    writing: float = 0.0  # compressing and inserting chunks, objects, the commit
    total: float = 0.0  # seconds from start to landed (without ``waited``)
    checked: int = 0  # names the cell could have changed
    pickled: int = 0  # of those, pickled again
    proved_unchanged: int = 0  # of those, proved unchanged by fingerprint, not pickled
    child_memory: int = 0  # bytes the child held of its own: its work, and pages the cell changed
    commit: str | None = None  # the commit it made (None: nothing had changed)
    merged: int = 0  # snapshots it took the place of (they had not started)
    branch: str = ""
    at: float = 0.0  # when it landed (seconds since the epoch)

    def as_dict(self) -> dict[str, object]:
        """Plain values, for JSON (the store keeps the last one per branch)."""
        return dict(self.__dict__)
