"""Restoring a snapshot into a namespace: exact, merge, only, and keeping what is there.

`restore` is what every front end's checkout comes down to (`Repo.checkout`,
the IPython extension's ``%stash checkout`` and undo, sessions): it applies the
entries of one commit to a namespace and says what it did in a
`CheckoutReport`.

- **exact** (the default): every name of the snapshot is restored, and the
  names the namespace's *current* snapshot held (``tracked``: they were
  committed) but this one lacks are removed, as git removes the files of the
  commit you leave. Never removed: names no snapshot held (git's untracked
  files: a value nobody saved), modules (a script's own ``import stashdb``),
  default-excluded names (``_``-prefixed, IPython's own), and names the
  snapshot skipped.
- **merge**: the snapshot's names are restored; every other name stays.
- **only**: just those names are restored; nothing else is touched.

A front end that tracks what its code could have changed knows more
(`KnownState`): which names still hold the values of its last snapshot. Then
a name whose value the target holds too stays in memory, unread (a group is
kept whole or read whole, or it would stop sharing its objects); and a value
that the target replaces is dropped *before* the new one is read, so a
checkout of gigabytes does not hold two copies at its peak. Should a dropped
name then fail to restore, or the checkout be interrupted, its old value is
brought back from the last snapshot.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Collection, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from stashdb.errors import NameNotInSnapshot, RestoreError, TamperedData
from stashdb.model import CheckoutReport, Commit, Entry, Failure, Progress, Skipped
from stashdb.workspace.environment import version_warnings
from stashdb.workspace.loader import Loader, ObjectSource
from stashdb.workspace.names import excluded_by_default, shell_names

__all__ = ["KnownState", "restore"]


@dataclass(frozen=True)
class KnownState:
    """What a front end knows of its namespace: ``unchanged`` names hold ``snapshot``'s values.

    The IPython extension knows which names each cell could have changed
    since its last snapshot; every other name still holds that snapshot's
    value (the same objects, not copies).
    """

    snapshot: Commit
    unchanged: frozenset[str]

    @classmethod
    def since(
        cls, snapshot: Commit, dirty: Collection[str], namespace: Collection[str]
    ) -> KnownState:
        """What is known when only the ``dirty`` names can have changed since ``snapshot``.

        A name that shares objects with a dirty one (its group in the
        snapshot) may have changed through it: `records.append(…)` changes
        `alias` too.
        """
        changed = set(dirty)
        for entry in snapshot.entries:
            if entry.name in dirty:
                changed.update(entry.group)
        unchanged = {
            e.name for e in snapshot.entries
            if e.kind != "skipped" and e.name not in changed and e.name in namespace
        }
        return cls(snapshot, frozenset(unchanged))


def restore(
    source: ObjectSource,
    commit: Commit,
    namespace: MutableMapping[str, Any],
    *,
    only: Iterable[str] | None = None,
    merge: bool = False,
    known: KnownState | None = None,
    tracked: Collection[str] = (),
    progress: Progress | None = None,
    verify: bool = False,
    safe: bool = False,
) -> CheckoutReport:
    """Apply snapshot ``commit`` to ``namespace``, reading its values from ``source``.

    A name that cannot be restored is reported in ``failed`` and keeps its
    current value; the others restore.

    Args:
        only: restore just these names (a name the snapshot lacks raises
            before anything changes); None: every name.
        merge: keep names the snapshot does not hold (ignored with ``only``).
        known: what the caller knows of the namespace (see `KnownState`).
        tracked: for an exact checkout, the names the namespace's current
            snapshot holds: those the target lacks are removed.
        progress: called as ``progress(done_bytes, total_bytes)``.
        verify: check each value's bytes against the digest the (checked)
            signature covers before unpickling it.
        safe: unpickle through the allow-list (`stashdb.pickling.safe`).

    Raises:
        NameNotInSnapshot: an ``only`` name is not in the snapshot.
        TamperedData: a value's bytes are not what was signed; nothing changed.
    """
    in_snapshot = {e.name: e for e in commit.entries}
    wanted = _wanted(commit, in_snapshot, only)
    keep = _already_there(known, commit, wanted, namespace) if known is not None else set()
    released = _release(known, in_snapshot, wanted, keep, namespace) if known is not None else []
    try:
        drop = set(tracked) if only is None and not merge else None
        report = _apply(
            source, commit, namespace, wanted, keep, progress, drop=drop,
            partial=only is not None, verify=verify, safe=safe,
        )
    finally:
        # Not restored (it failed, or the checkout was interrupted): the old
        # values come back from the snapshot that holds them.
        lost = [n for n in released if n not in namespace]
        if lost and known is not None:  # as checked as the checkout itself
            restore(source, known.snapshot, namespace, only=lost, verify=verify, safe=safe)
    return report


def _wanted(
    commit: Commit, in_snapshot: dict[str, Entry], only: Iterable[str] | None
) -> list[str]:
    if only is None:
        return sorted(in_snapshot)
    wanted = [only] if isinstance(only, str) else list(dict.fromkeys(only))
    missing = [n for n in wanted if n not in in_snapshot]
    if missing:
        raise NameNotInSnapshot(missing, commit.id, sorted(in_snapshot))
    return wanted


def _already_there(
    known: KnownState, target: Commit, wanted: Collection[str], namespace: Any
) -> set[str]:
    """Wanted names whose current value already is ``target``'s: they stay in memory."""
    ours = {e.name: e.stored_as for e in known.snapshot.entries}
    keep = {
        e.name for e in target.entries
        if e.name in wanted and e.name in known.unchanged and e.name in namespace
        and e.kind != "skipped" and ours.get(e.name) == e.stored_as
    }
    # A group is kept whole or read whole: half of it kept and half read back
    # would no longer share its objects.
    for entry in target.entries:
        if entry.name in keep and not keep.issuperset(entry.group):
            keep.difference_update((entry.name, *entry.group))
    return keep


def _release(
    known: KnownState,
    in_snapshot: dict[str, Entry],
    wanted: Collection[str],
    keep: Collection[str],
    namespace: MutableMapping[str, Any],
) -> list[str]:
    """Drop the old values the checkout replaces that the known snapshot holds.

    Otherwise a checkout holds two copies of every replaced value at its peak.
    Safe: the snapshot has the old value, and a name that then fails to
    restore gets it back from there.
    """
    held = {e.name for e in known.snapshot.entries if e.kind == "value"}
    replaced = [
        name for name in wanted
        if name in known.unchanged and name not in keep and name in held and name in namespace
        and in_snapshot[name].kind == "value"
    ]
    for name in replaced:
        del namespace[name]
    return replaced


def _apply(
    source: ObjectSource,
    commit: Commit,
    namespace: MutableMapping[str, Any],
    wanted: list[str],
    keep: Collection[str],
    progress: Progress | None,
    *,
    drop: set[str] | None,
    partial: bool,
    verify: bool = False,
    safe: bool = False,
) -> CheckoutReport:
    report = CheckoutReport(commit, kept=sorted(keep))
    to_read = [n for n in wanted if n not in keep]
    # In a partial checkout, names the namespace has stay what restored values refer to.
    prefer = (set(namespace) - set(wanted)) if partial else set()
    loader = Loader(source, commit, namespace, prefer_namespace=prefer | set(keep),
                    verify=verify, safe=safe)
    in_snapshot = {e.name: e for e in commit.entries}
    # Smallest first, in the order they are read ahead: the values slow to
    # unpickle (many objects, imports) tend to be small, and the big
    # buffers are read meanwhile (bench_large's workspace: the 128 MB
    # array was read in 0.19 s while the DataFrame unpickled in 0.41 s).
    to_read.sort(key=lambda n: in_snapshot[n].size)
    loader.prefetch(to_read)
    try:
        restored = _load_all(loader, to_read, in_snapshot, report, progress)
    finally:
        loader.close()
    # What restored values need and the namespace lacks comes along (`p` without its
    # class `Point` would have methods that cannot find `Point`), as at() gives it.
    needed = {n: loader.load(n) for n in sorted(loader.needed - set(restored) - set(namespace))}
    report.needed = sorted(needed)
    report.skipped.sort(key=lambda s: s.name)
    report.failed.sort(key=lambda f: f.name)
    report.warnings[:0] = version_warnings(commit)  # after: it checks dill only if used
    if drop is not None:
        hidden = shell_names(namespace)
        for name in [n for n in namespace if n in drop and n not in in_snapshot]:
            value = namespace[name]
            if not excluded_by_default(name, hidden) and not isinstance(value, types.ModuleType):
                del namespace[name]
                report.removed.append(name)
    namespace.update(restored)
    namespace.update(needed)
    report.restored = sorted(restored)
    return report


def _load_all(
    loader: Loader,
    wanted: list[str],
    in_snapshot: dict[str, Entry],
    report: CheckoutReport,
    progress: Progress | None,
) -> dict[str, Any]:
    """Load each wanted name; a name that fails is reported and the others go on."""
    restored: dict[str, Any] = {}
    sizes = {e.object_id: e.size for n in wanted if (e := in_snapshot[n]).object_id}
    total, done, counted = sum(sizes.values()), 0, set()
    for name in wanted:
        entry = in_snapshot[name]
        if entry.kind == "skipped":
            report.skipped.append(Skipped(name, entry.type_name, entry.reason or ""))
            continue
        try:
            restored[name] = loader.load(name)
        except TamperedData:
            raise  # the store was changed behind its writer's back: nothing is applied
        except RestoreError as exc:
            report.failed.append(Failure(name, exc.reason))
        except Exception as exc:  # CorruptChunk and anything a value's __setstate__ raises
            report.failed.append(Failure(name, f"{type(exc).__name__}: {exc}"))
        if entry.object_id and entry.object_id not in counted:
            counted.add(entry.object_id)
            done += sizes[entry.object_id]
        if progress is not None:
            progress(done, total)
        _note_module_version(entry, report)
    return restored


def _note_module_version(entry: Entry, report: CheckoutReport) -> None:
    if entry.kind != "module" or not entry.version or not entry.module:
        return
    module = sys.modules.get(entry.module)
    now = getattr(module, "__version__", None)
    if now is not None and str(now) != entry.version:
        report.warnings.append(
            f"{entry.name}: module {entry.module} was {entry.version} at commit, now {now}"
        )
