"""Moving state between stores: history bundles, remotes (push, fetch, pull, clone), lazy data.

`Repo.export`, `Repo.import_bundle`, `Repo.push` & co. are thin: the work is
here, on two `Store` objects, through `stashdb.storage.transfer` (what is
missing, sent bottom up) and `stashdb.storage.bundle` (the same rows as one
file). A remote is a name and a store URL kept in the store's settings
(``remote.NAME.url``); what a fetch saw of its branches is kept as
remote-tracking refs (``NAME/BRANCH``, kind "remote") that revs and
``log --all`` know. A lazy clone keeps ``lazy_remote``: the remote whose
data it has not copied yet; `ensure_objects` fetches what a restore needs.
Nothing here unpickles.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from stashdb.errors import (
    BadBundle,
    FetchFailed,
    InvalidArguments,
    NotFastForward,
    RefNotFound,
    RemoteExists,
    RemoteNotFound,
    StashError,
    TransferRefused,
)
from stashdb.model import RefChange, Transfer
from stashdb.storage import graph, queries
from stashdb.storage.format import LAZY_NOTE
from stashdb.storage.refs import check_name
from stashdb.storage.store import Store

if TYPE_CHECKING:  # transfer imports SQLAlchemy: a restore from a full SQLite store never does
    from stashdb.storage.bundle import Bundle
    from stashdb.storage.transfer import Progress

__all__ = [
    "LAZY_NOTE", "Remote", "add_remote", "clone_into", "ensure_objects", "export", "fetch",
    "history_file", "import_bundle", "lazy_remote", "pull", "push", "remote", "remotes",
    "remove_remote",
]

_PREFIX = "remote."


@dataclass(frozen=True)
class Remote:
    """Another store this one sends history to and fetches it from."""

    name: str
    url: str


def remotes(store: Store) -> list[Remote]:
    """The store's remotes, by name."""
    found = store.reader.notes(_PREFIX)
    return sorted(
        (Remote(key[len(_PREFIX):-len(".url")], url)
         for key, url in found.items() if key.endswith(".url")),
        key=lambda r: r.name,
    )


def remote(store: Store, name: str | None) -> Remote:
    """The remote ``name``; None: ``origin``, or the only one there is.

    Raises:
        RemoteNotFound: no such remote (or none, or several and no name).
    """
    known = remotes(store)
    if name is None:
        if len(known) == 1:
            return known[0]
        name = "origin"
    for found in known:
        if found.name == name:
            return found
    raise RemoteNotFound(name, [r.name for r in known])


def add_remote(store: Store, name: str, url: str) -> Remote:
    """Remember the store at ``url`` as remote ``name`` (it must be a store that opens).

    Raises:
        InvalidRefName: ``name`` cannot name refs (``name/branch``).
        RemoteExists: the name is taken.
        StoreUnreachable, NotAStore: ``url`` is not a store.
    """
    check_name(name)
    if "/" in name:  # its refs are name/branch
        raise InvalidArguments(f"a remote's name holds no '/' ({name!r})")
    for found in remotes(store):
        if found.name == name:
            raise RemoteExists(name, found.url)
    _open(url).close()
    store.commits.set_note(f"{_PREFIX}{name}.url", url)
    return Remote(name, url)


def remove_remote(store: Store, name: str) -> Remote:
    """Forget remote ``name`` and its remote-tracking refs (the commits stay).

    Raises:
        RemoteNotFound: no such remote.
    """
    found = remote(store, name)
    for ref in store.reader.list_refs("remote"):
        if ref.name.startswith(name + "/"):
            store.commits.set_tracking_ref(ref.name, None)
    store.commits.delete_notes(f"{_PREFIX}{name}.")
    return found


def lazy_remote(store: Store) -> str | None:
    """The remote a lazy clone fetches its data from; None: the store has all its data."""
    return store.reader.notes(LAZY_NOTE).get(LAZY_NOTE)


def _open(url: str) -> Store:
    return Store.open(url)


# -- bundles ---------------------------------------------------------------------


def export(store: Store, revs: Sequence[str], path: str | os.PathLike[str]) -> Transfer:
    """Write the commits ``revs`` reach (``A..B``: what B adds to A) to a bundle file.

    Named branches and tags go in as refs; HEAD as the current branch. The
    file is written beside ``path`` and renamed over it once whole.

    Raises:
        RevisionNotFound, AmbiguousRevision: a rev names nothing.
        TransferRefused: the store is encrypted.
        InvalidArguments: no revs.
    """
    from stashdb.storage.bundle import export_history
    from stashdb.storage.transfer import parents_first, refuse_encrypted

    if not revs:
        raise InvalidArguments("name what to export: a branch, a tag, a commit, or A..B")
    refuse_encrypted(store, "this store")
    tips, base, refs = _parse_revs(store, revs)
    with store.reader.transaction() as sql:
        parents = queries.edges(sql)
    have = set(graph.reachable(parents, base))
    commits = [c for c in graph.reachable(parents, tips) if c not in have]
    ordered = parents_first(set(commits), parents)
    ensure_history(store, None, ordered)  # a lazy clone: the data goes in the file too
    # The base is what the commits' parents outside the bundle are (a store must have them).
    needed = sorted({p for c in ordered for p in parents.get(c, ()) if p in have})
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    counts: list[int] = []
    try:
        with temporary.open("wb") as out, store.reader.transaction() as sql:
            size = export_history(sql, ordered, out, refs=refs, base=needed, counts=counts)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    counted = Transfer(len(ordered), counts[0], counts[1], size)
    counted.refs = [RefChange(n, k, None, c, "new") for n, k, c in refs]
    return counted


def _parse_revs(
    store: Store, revs: Sequence[str]
) -> tuple[list[str], list[str], list[tuple[str, str, str]]]:
    """``(tips, base, refs)`` of revs like ``main``, ``v1``, ``abc123``, ``A..B``."""
    tips: list[str] = []
    base: list[str] = []
    refs: list[tuple[str, str, str]] = []
    reader = store.reader
    for rev in revs:
        low, sep, high = rev.partition("..")
        if sep:
            base.append(reader.resolve(low or "HEAD"))
            rev = high or "HEAD"
        commit_id = reader.resolve(rev)
        tips.append(commit_id)
        name = reader.head() if rev == "HEAD" else rev
        ref = reader.find_ref(name)
        if ref is not None and ref.kind in ("branch", "tag") and ref.commit_id == commit_id:
            refs.append((ref.name, ref.kind, commit_id))
    return tips, base, refs


def import_bundle(store: Store, path: str | os.PathLike[str]) -> Transfer:
    """Add a bundle file's history to ``store``, skipping what it has; say what was added.

    Every byte is checked before anything is stored (`read_bundle`). Its
    branches move only forward: one that has gone elsewhere here is kept, and
    the report says so. Commits keep their ids and signatures; whether they
    are trusted is decided when one is checked out.

    Raises:
        BadBundle: not a sound bundle file: nothing stored.
        TransferRefused: it builds on commits this store lacks, or the store is encrypted.
    """
    from stashdb.storage.transfer import refuse_encrypted

    refuse_encrypted(store, "this store")
    with history_file(path) as bundle:
        with store.reader.transaction() as sql:
            have = queries.ids_in(sql, "commits", bundle.base)
            lacking = [c for c in bundle.base if c not in have]
            objects = queries.incomplete_objects(sql, bundle.needs_objects)
            have_chunks = queries.ids_in(sql, "chunks", sorted(bundle.needs_chunks))
            known = queries.ids_in(sql, "commits", sorted(
                {p for c in bundle.commits for p in c.parents}))
        if lacking or objects or bundle.needs_chunks - have_chunks:
            raise TransferRefused(
                f"the bundle builds on {len(lacking) or 'data of'} commits this store lacks"
                f"{' (' + lacking[0][:12] + ' …)' if lacking else ''}: import the bundle "
                "they are in first, or export it whole (no A..B)")
        held = {c.id for c in bundle.commits}  # each one's id checked as it was read
        for commit in bundle.commits:
            orphan = [p for p in commit.parents if p not in held and p not in known]
            if orphan:
                raise BadBundle(f"commit {commit.id[:12]} has a parent {orphan[0][:12]} that "
                                "neither the bundle nor this store holds")
        chunks = {cid: (codec, raw, data, bundle.digests[cid])
                  for cid, codec, raw, data in bundle.chunks}
        writer = store.object_writer()
        count, written, added = writer.put_stored(bundle.objects, chunks)
        writer.flush()
        made = store.commits.put_commits(
            [(c, bundle.times[c.id]) for c in bundle.commits], bundle.signatures)
    report = Transfer(commits=made, objects=len(added), chunks=count, bytes=written)
    for name, kind, commit_id in bundle.refs:
        report.refs.append(_take_ref(store, name, kind, commit_id))
    return report


@contextmanager
def history_file(path: str | os.PathLike[str]) -> Iterator[Bundle]:
    """The checked history in the bundle file at ``path`` (its bytes mapped, not read).

    Raises:
        BadBundle: the file cannot be read, or is not a sound history bundle.
    """
    from stashdb.storage.bundle import read_bundle

    file = Path(path)
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise BadBundle(f"{file} cannot be read ({exc.strerror or exc})") from None
    with handle, _mapped(handle) as view:
        bundle = read_bundle(view)
        if bundle.kind != "history":
            raise BadBundle("it is a session's state, not a history: restore it in a session")
        yield bundle


@contextmanager
def _mapped(handle: BinaryIO) -> Iterator[memoryview | bytes]:
    """A read-only memory map of a file (an empty file: empty bytes): a 1 GB bundle is not read."""
    try:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    except ValueError:  # an empty file cannot be mapped
        yield b""
        return
    try:
        yield memoryview(mapped)
    finally:
        # Views of it that live on (a traceback's frames) keep it open until collected.
        with suppress(BufferError):
            mapped.close()


def _take_ref(store: Store, name: str, kind: str, commit_id: str) -> RefChange:
    """Create ``name`` at ``commit_id``, or move it forward; keep it where it went elsewhere."""
    existing = store.reader.find_ref(name)
    if existing is None:
        if store.commits.move_ref(name, kind, None, commit_id):
            return RefChange(name, kind, None, commit_id, "new")
        existing = store.reader.find_ref(name)
        assert existing is not None
    if existing.commit_id == commit_id:
        return RefChange(name, kind, commit_id, commit_id, "up to date")
    if existing.kind != kind:
        return RefChange(name, existing.kind, existing.commit_id, existing.commit_id, "kept",
                         f"it is a {existing.kind} here")
    if kind == "branch" and _descends(store, commit_id, existing.commit_id):
        if store.commits.move_ref(name, kind, existing.commit_id, commit_id):
            return RefChange(name, kind, existing.commit_id, commit_id, "moved")
        return RefChange(name, kind, existing.commit_id, existing.commit_id, "kept",
                         "another writer moved it meanwhile")
    why = ("it is here at another commit" if kind == "tag" else
           f"it has commits here that {commit_id[:12]} lacks")
    return RefChange(name, kind, existing.commit_id, existing.commit_id, "kept", why)


def _descends(store: Store, commit_id: str, ancestor: str) -> bool:
    """Whether ``ancestor`` is ``commit_id`` or one of its ancestors (in ``store``)."""
    with store.reader.transaction() as sql:
        parents = queries.edges(sql)
    return ancestor in set(graph.reachable(parents, [commit_id]))


# -- remotes -----------------------------------------------------------------------


def push(
    store: Store, name: str | None, refs: Sequence[str], *, force: bool = False,
    progress: Progress | None = None,
) -> Transfer:
    """Send ``refs`` (default: the current branch) and what they reach to a remote.

    Only what the remote lacks is sent. A branch moves there by
    compare-and-swap from where this push found it: if it is not a
    fast-forward (the remote has commits this one does not build on), or
    another push moved it meanwhile, it is refused — unless ``force``, which
    moves it anyway (still refusing if it moved while this push ran).

    Raises:
        RemoteNotFound, StoreUnreachable: no such remote, or it cannot be reached.
        NotFastForward: a branch there has commits these do not build on.
        TransferRefused: the remote is a lazy clone, or a store is encrypted.
    """
    from stashdb.storage import transfer

    found = remote(store, name)
    other = _open(found.url)
    try:
        transfer.check_pair(store, other)
        if lazy_remote(other) is not None:
            raise TransferRefused(f"{found.name} is a lazy clone: it lacks data it would "
                                  "seem to have; push to the store it was cloned from")
        wanted = [_local_ref(store, r) for r in (refs or [store.reader.head()])]
        plans = []
        for ref_name, kind, tip in wanted:
            there = other.reader.find_ref(ref_name)
            old = there.commit_id if there is not None else None
            if there is not None and there.kind != kind:
                raise TransferRefused(f"{ref_name!r} is a {there.kind} in {found.name}")
            if old is not None and old != tip and not force and (
                    kind == "tag" or not _descends(store, tip, old)):
                raise NotFastForward(
                    f"{found.name}'s", ref_name, old, tip,
                    "fetch and pull its commits first, or force the push to drop them"
                    if kind == "branch" else "it is a tag: force the push to move it")
            plans.append((ref_name, kind, old, tip))
        missing = transfer.missing_commits(store, other, [tip for *_, tip in plans])
        ensure_history(store, other, missing)
        report = transfer.send(store, other, missing, progress=progress)
        for ref_name, kind, old, tip in plans:
            report.refs.append(_move_there(other, found.name, ref_name, kind, old, tip, force))
            if kind == "branch":
                store.commits.set_tracking_ref(f"{found.name}/{ref_name}", tip)
        return report
    finally:
        other.close()


def _local_ref(store: Store, name: str) -> tuple[str, str, str]:
    ref = store.reader.find_ref(name)
    if ref is None or ref.kind not in ("branch", "tag"):
        raise RefNotFound("branch or tag", name)
    return ref.name, ref.kind, ref.commit_id


def _move_there(
    other: Store, remote_name: str, name: str, kind: str, old: str | None, tip: str, force: bool
) -> RefChange:
    if old == tip:
        return RefChange(name, kind, old, tip, "up to date")
    if not other.commits.move_ref(name, kind, old, tip):
        now = other.reader.find_ref(name)
        raise NotFastForward(
            f"{remote_name}'s", name, now.commit_id if now is not None else "nothing", tip,
            "another push moved it while this one ran: fetch and pull, then push again")
    forced = old is not None and force and (kind == "tag" or not _descends(other, tip, old))
    return RefChange(name, kind, old, tip, "forced" if forced else ("moved" if old else "new"))


def fetch(
    store: Store, name: str | None, refs: Sequence[str] = (), *, all_data: bool = False,
    progress: Progress | None = None,
) -> Transfer:
    """Copy a remote's branches (or ``refs``) and tags, and what they reach that this store lacks.

    Its branches land as remote-tracking refs (``origin/main``); its tags as
    tags, where this store has none of that name. A lazy clone copies commits
    and manifests only; ``all_data`` copies every value's data too (and the
    clone is lazy no more).

    Raises:
        RemoteNotFound, StoreUnreachable: no such remote, or it cannot be reached.
        RefNotFound: a ref named is not a branch or tag there.
    """
    from stashdb.storage import transfer

    found = remote(store, name)
    other = _open(found.url)
    try:
        transfer.check_pair(other, store)
        lazy = lazy_remote(store) == found.name and not all_data
        if not lazy and lazy_remote(other) is not None:
            raise TransferRefused(
                f"{found.name} is a lazy clone: it lacks data its commits name; fetch from the "
                "store it was cloned from (or lazily)")
        theirs = [r for r in other.reader.list_refs() if r.kind in ("branch", "tag")]
        if refs:
            named = {r.name: r for r in theirs}
            for wanted in refs:
                if wanted not in named:
                    raise RefNotFound("branch or tag", f"{wanted} (in {found.name})")
            theirs = [named[w] for w in refs]
        tips = [r.commit_id for r in theirs]
        missing = transfer.missing_commits(other, store, tips)
        report = transfer.send(other, store, missing, data=not lazy, progress=progress)
        for ref in theirs:
            if ref.kind == "branch":
                report.refs.append(_track(store, f"{found.name}/{ref.name}", ref.commit_id))
            else:
                report.refs.append(_take_ref(store, ref.name, "tag", ref.commit_id))
        if not refs:  # branches gone there: their tracking refs go too
            gone = {f"{found.name}/{r.name}" for r in theirs if r.kind == "branch"}
            for ref in store.reader.list_refs("remote"):
                if ref.name.startswith(found.name + "/") and ref.name not in gone:
                    store.commits.set_tracking_ref(ref.name, None)
                    report.refs.append(RefChange(ref.name, "remote", ref.commit_id, None,
                                                 "moved"))
        if all_data and lazy_remote(store) == found.name:
            report.add(_fetch_all_data(store, other, progress))
            store.commits.delete_notes(LAZY_NOTE)
        return report
    finally:
        other.close()


def _track(store: Store, name: str, commit_id: str) -> RefChange:
    before = store.reader.find_ref(name)
    old = before.commit_id if before is not None else None
    if old != commit_id:
        store.commits.set_tracking_ref(name, commit_id)
    what = "up to date" if old == commit_id else ("moved" if old else "new")
    return RefChange(name, "remote", old, commit_id, what)


def _fetch_all_data(store: Store, other: Store, progress: Progress | None) -> Transfer:
    from stashdb.storage import transfer

    with store.reader.transaction() as sql:
        wanted = queries.referenced_objects(sql)
        wanted = queries.incomplete_objects(sql, wanted)
    return transfer.send_objects(other, store, wanted, progress=progress)


def pull(
    store: Store, name: str | None, refs: Sequence[str] = (), *,
    progress: Progress | None = None,
) -> Transfer:
    """Fetch, then move this store's branches (default: the current one) forward to the remote's.

    A branch this store does not have is created. One with commits the
    remote's lacks is not moved: `NotFastForward` says what to do.

    Raises:
        RemoteNotFound, StoreUnreachable: no such remote, or it cannot be reached.
        NotFastForward: the branch here and there have each gone their own way.
    """
    found = remote(store, name)
    branches = list(refs) or [store.reader.head()]
    report = fetch(store, found.name, branches, progress=progress)
    for branch in branches:
        tracking = store.reader.find_ref(f"{found.name}/{branch}")
        if tracking is None:  # a tag: fetched as a tag
            continue
        mine = store.reader.find_ref(branch)
        old = mine.commit_id if mine is not None else None
        theirs = tracking.commit_id
        if old == theirs or (old is not None and _descends(store, old, theirs)):
            report.refs.append(RefChange(branch, "branch", old, old, "up to date"))
            continue
        if old is not None and not _descends(store, theirs, old):
            raise NotFastForward(
                "your", branch, old, theirs,
                f"keep yours and push it under another name, or take theirs by resetting "
                f"{branch} to {found.name}/{branch}")
        if not store.commits.move_ref(branch, "branch", old, theirs):
            raise NotFastForward("your", branch, old or "nothing", theirs,
                                 "it moved while pulling: pull again")
        report.refs.append(RefChange(branch, "branch", old, theirs, "moved" if old else "new"))
    return report


def clone_into(store: Store, url: str, *, lazy: bool = False,
               progress: Progress | None = None) -> Transfer:
    """Make the new, empty ``store`` a copy of the store at ``url`` (remote ``origin``).

    Every branch and tag comes along, and HEAD is the remote's. ``lazy``
    copies commits and manifests only: values' data come on demand.

    Raises:
        InvalidArguments: ``store`` holds commits already.
        StoreUnreachable, NotAStore: ``url`` is not a store that opens.
    """
    if store.reader.commit_ids():
        raise InvalidArguments(f"{store.location} holds commits already: clone into a new store")
    add_remote(store, "origin", url)
    if lazy:
        store.commits.set_note(LAZY_NOTE, "origin")
    other = _open(url)
    try:
        head = other.reader.head()
    finally:
        other.close()
    report = fetch(store, "origin", progress=progress)
    # The branches as this fetch saw them (a push landing meanwhile is not here yet).
    for ref in store.reader.list_refs("remote"):
        if ref.name.startswith("origin/"):
            name = ref.name[len("origin/"):]
            report.refs.append(_take_ref(store, name, "branch", ref.commit_id))
            if name == head:
                store.commits.set_head(head)
    return report


# -- lazy data ---------------------------------------------------------------------


def ensure_objects(store: Store, object_ids: Sequence[bytes]) -> None:
    """In a lazy clone, fetch from its remote the objects among ``object_ids`` not here yet.

    What is fetched is kept: the next restore of those values reads them here.

    Raises:
        FetchFailed: the remote cannot be reached, or lacks them.
    """
    name = lazy_remote(store)
    if name is None or not object_ids:
        return
    with store.reader.transaction() as sql:
        wanted = queries.incomplete_objects(sql, object_ids)
    if not wanted:
        return
    from stashdb.storage import transfer

    try:
        found = remote(store, name)
        other = _open(found.url)
    except StashError as exc:
        raise FetchFailed(name, str(exc)) from None
    try:
        transfer.send_objects(other, store, wanted)
    except StashError as exc:
        raise FetchFailed(found.url, str(exc)) from None
    finally:
        other.close()


def ensure_history(store: Store, target: Store | None, commit_ids: Sequence[str]) -> None:
    """Before a lazy clone sends ``commit_ids`` on, fetch what of their data it lacks.

    Only what ``target`` (the receiver; None: a file) lacks too: an unchanged
    value the receiver has is not fetched just to be skipped.
    """
    if lazy_remote(store) is None:
        return
    with store.reader.transaction() as sql:
        objects = sorted(queries.objects_of_commits(sql, commit_ids))
    if target is not None:
        with target.reader.transaction() as sql:
            have = set(queries.object_facts(sql, objects))
            have -= queries.incomplete_objects(sql, have)
        objects = [oid for oid in objects if oid not in have]
    ensure_objects(store, objects)
