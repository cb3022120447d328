"""The exceptions stashdb raises on purpose: every one of them is defined here.

Every error a user can cause is a `StashError` subclass whose message says what
happened and what to do next, in the library's own terms (the command line
adds its own hints). Anything else escaping stashdb is a bug. This module
imports nothing, so that ``except stashdb.RevisionNotFound`` costs no import
of SQLAlchemy, dill or numpy (tests/test_errors.py).
"""

# long: one short class per error a user can meet, each with its message; splitting
# them would make `except stashdb.X` hunt across modules (docs/architecture.md).

from __future__ import annotations

__all__ = [
    "AmbiguousRevision",
    "BadBundle",
    "CallbackError",
    "CorruptChunk",
    "DriverMissing",
    "ExecutionFailed",
    "ExecutionTimeout",
    "ExportError",
    "FetchFailed",
    "InvalidArguments",
    "InvalidRefName",
    "KeyProblem",
    "MemoryLimitExceeded",
    "NameNotInNamespace",
    "NameNotInSnapshot",
    "NotABranch",
    "NotASessionFile",
    "NotAStore",
    "NotFastForward",
    "NothingToUndo",
    "RefExists",
    "RefInUse",
    "RefNotFound",
    "RemoteExists",
    "RemoteNotFound",
    "RestoreError",
    "RevisionNotFound",
    "ScriptNotFound",
    "SessionClosed",
    "SessionError",
    "SnapshotLost",
    "StashError",
    "StoreDamaged",
    "StoreKeyMissing",
    "StoreLocked",
    "StoreNotFound",
    "StoreUnreachable",
    "StoreWriteError",
    "TamperedData",
    "TransferRefused",
    "UnsafeGlobal",
    "UnsavedValues",
    "UnsupportedFormat",
    "UntrustedSnapshot",
    "VersionMismatchWarning",
    "ViewerFailed",
    "WorkerCrashed",
    "WriteConflict",
]


class StashError(Exception):
    """Root of every error stashdb raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled as what it is, not as a call of __init__ with the message (the
        # default, which fails for errors whose __init__ takes the facts): so it
        # crosses from a session's worker to the host, and comes back from a
        # snapshot that holds one. A stored name: docs/format.md.
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(
    cls: type[StashError], args: tuple[object, ...], state: dict[str, object]
) -> StashError:
    """A StashError as it was pickled (see `StashError.__reduce__`)."""
    error = cls.__new__(cls, *args)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class StoreNotFound(StashError):
    """No store was found where one was expected."""

    def __init__(self, start: str) -> None:
        self.start = start
        super().__init__(
            f"no stashdb store found in {start} or any parent directory; "
            "run stashdb.init() (or `stashdb init`) to create one, or pass repo=PATH_OR_URL"
        )


class NotAStore(StashError):
    """A file or database exists but is not a stashdb store."""

    def __init__(self, location: str, why: str) -> None:
        self.location = location
        self.why = why
        super().__init__(
            f"{location} is not a stashdb store ({why}); "
            "point repo= at a directory holding .stashdb/ or at a store's database URL"
        )


class UnsupportedFormat(StashError):
    """The store was written by a newer stashdb than this one."""

    def __init__(self, location: str, found: int, supported: int) -> None:
        self.location = location
        self.found = found
        self.supported = supported
        super().__init__(
            f"{location} has store format {found}, but this stashdb reads formats up to "
            f"{supported}; upgrade stashdb (pip install -U stashdb) to open it"
        )


class RevisionNotFound(StashError):
    """A rev names no commit."""

    def __init__(self, rev: str, why: str = "") -> None:
        self.rev = rev
        detail = f" ({why})" if why else ""
        super().__init__(
            f"unknown revision {rev!r}{detail}; use a commit id, a unique id prefix of at "
            "least 4 hex digits, a tag, a branch, HEAD, or REV~N (see stashdb.log())"
        )


class AmbiguousRevision(StashError):
    """A rev names more than one commit: a short id that several share, or a ref name
    that is also the start of a commit id."""

    def __init__(self, rev: str, candidates: list[str], ref: tuple[str, str] | None = None) -> None:
        self.rev = rev
        self.candidates = candidates
        self.ref = ref  # (kind, commit id) of the branch or tag of that name, if one
        shown = ", ".join(c[:12] for c in candidates[:5])
        if ref is not None:
            kind, commit_id = ref
            super().__init__(
                f"{rev!r} is ambiguous: it is a {kind} (at {commit_id[:8]}) and the start of "
                f"commit id {shown}; give the full commit id, or rename the {kind}"
            )
            return
        super().__init__(
            f"short id {rev!r} is ambiguous: it matches {len(candidates)} commits ({shown}); "
            "give more hex digits"
        )


class RefNotFound(StashError):
    """A branch or tag does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"no {kind} named {name!r}")


class RefExists(StashError):
    """A branch or tag with that name already exists."""

    def __init__(self, kind: str, name: str, commit_id: str) -> None:
        self.kind = kind
        self.name = name
        self.commit_id = commit_id
        super().__init__(
            f"{kind} {name!r} already exists (at {commit_id[:8]}); pick another name "
            f"or delete the {kind} first"
        )


class NameNotInSnapshot(StashError):
    """Names asked for with `only=` are not in the snapshot."""

    def __init__(self, names: list[str], commit_id: str, available: list[str]) -> None:
        self.names = names
        self.commit_id = commit_id
        self.available = available
        listed = ", ".join(available[:10]) + (" …" if len(available) > 10 else "")
        super().__init__(
            f"{', '.join(map(repr, names))} not in snapshot {commit_id[:8]}; "
            f"it holds: {listed or '(nothing)'}"
        )


class CorruptChunk(StashError):
    """A stored object, or one of its chunks, is missing or does not match its hash.

    ``expected`` is the chunk's id (the hash its bytes must have); ``got`` is
    the hash they have, or None when the chunk is missing. ``object_id`` is
    the object that needed it; ``chunk_id`` is None when the object itself is
    missing.
    """

    def __init__(
        self,
        chunk_id: str | None,
        got: str | None,
        name: str | None = None,
        object_id: str | None = None,
    ) -> None:
        self.chunk_id = chunk_id
        self.expected = chunk_id
        self.got = got
        self.name = name
        self.object_id = object_id
        where = f" of variable {name!r}" if name else ""
        if chunk_id is None:
            what = f"object {(object_id or '')[:16]}{where} is missing"
        elif got is None:
            what = f"chunk {chunk_id[:16]}{where} is missing"
        else:
            what = f"chunk {chunk_id[:16]}{where} is damaged (its bytes hash to {got[:16]})"
        super().__init__(
            f"{what}; the other variables still restore (run `stashdb verify` to see "
            "everything affected; committing the value again repairs it)"
        )

    def for_name(self, name: str) -> CorruptChunk:
        """The same error, naming the variable whose value needed the chunk."""
        return CorruptChunk(self.chunk_id, self.got, name, self.object_id)


class VersionMismatchWarning(UserWarning):
    """A snapshot was written by a different Python or dill version."""


class NameNotInNamespace(StashError):
    """``only=`` names or patterns match nothing in the namespace being committed."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = patterns
        super().__init__(
            f"nothing in the namespace matches {', '.join(map(repr, patterns))}; "
            "check the spelling, or leave only= out to commit every name"
        )


class RestoreError(StashError):
    """A stored name cannot be brought back (skipped at commit, or fails to unpickle here)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"cannot restore {name!r}: {reason}")


class UnsafeGlobal(RestoreError):
    """Safe loading met a global outside its allow-list: the value was not loaded."""

    def __init__(self, name: str, global_name: str) -> None:
        self.global_name = global_name
        super().__init__(
            name,
            f"safe loading refuses {global_name} (only plain data, numpy and pandas are "
            "allowed); load it without safe=True only if you trust who wrote it",
        )


class UntrustedSnapshot(StashError):
    """A commit is unsigned, or signed by a key that is not trusted here: nothing was unpickled."""

    def __init__(self, commit_id: str, why: str, key_id: str | None = None) -> None:
        self.commit_id = commit_id
        self.why = why
        self.key_id = key_id
        super().__init__(
            f"commit {commit_id[:8]} {why}; nothing was unpickled. Trust it only if you "
            "trust who wrote the store: pass trust=True, add the writer's key with "
            "`stashdb keys trust FILE`, or load only plain data with safe=True"
        )


class TamperedData(StashError):
    """Stored data does not match what its signature covers: nothing of it was unpickled."""

    def __init__(self, commit_id: str, what: str, name: str | None = None) -> None:
        self.commit_id = commit_id
        self.what = what
        self.name = name
        subject = f"{name!r} of commit {commit_id[:8]}" if name else f"commit {commit_id[:8]}"
        super().__init__(
            f"{subject}: {what}; it was changed after it was signed (or damaged), and "
            "nothing of it was unpickled. Run `stashdb verify` to see what else is affected"
        )


class StoreKeyMissing(StashError):
    """An encrypted store's key is not in the user's key directory: nothing can be read."""

    def __init__(self, location: str, key_id: str) -> None:
        self.location = location
        self.key_id = key_id
        super().__init__(
            f"{location} is encrypted with store key {key_id}, which is not in your key "
            "directory: ask whoever made the store for it (`stashdb keys export --store-key`) "
            "and add it with `stashdb keys trust FILE`"
        )


class KeyProblem(StashError):
    """A key file or key directory cannot be used (missing, unreadable, not a key)."""

    def __init__(self, where: str, why: str) -> None:
        self.where = where
        self.why = why
        super().__init__(f"{where}: {why}")


class StoreWriteError(StashError):
    """The store could not be written (disk full, file too large, I/O error …)."""

    def __init__(self, location: str, why: str) -> None:
        self.location = location
        self.why = why
        lowered = why.lower()
        if "readonly" in lowered or "read-only" in lowered or "permission" in lowered:
            advice = "it is read-only here: check the permissions of the store and its directory"
        elif "too large" in lowered or "file size" in lowered:
            advice = "raise the file size limit (ulimit -f) and try again"
        elif "full" in lowered or "no space" in lowered:
            advice = "free some space and try again"
        else:
            advice = "check the disk (free space, file size limit, I/O errors) and try again"
        super().__init__(
            f"could not write to {location} ({why}); nothing was committed and the store is "
            f"as it was: {advice}"
        )


class StoreUnreachable(StashError):
    """The database server (or file) cannot be reached with the given URL."""

    def __init__(self, location: str, why: str) -> None:
        self.location = location
        self.why = why
        super().__init__(
            f"cannot connect to {location} ({why}); check that the server is running and "
            "that the URL's host, port, user, password and database are right"
        )


class StoreLocked(StashError):
    """Another process held the store's write lock for longer than we were willing to wait."""

    def __init__(self, location: str, waited: float) -> None:
        self.location = location
        self.waited = waited
        super().__init__(
            f"{location} is locked: another process has held its write lock for the "
            f"{waited:.1f} s we waited; nothing was written. Try again when that process "
            "is done, or wait longer (lock_timeout)"
        )


class InvalidRefName(StashError):
    """A branch or tag name that could not be told apart from a rev."""

    def __init__(self, name: str, why: str = "") -> None:
        self.name = name
        detail = f" ({why})" if why else ""
        super().__init__(
            f"{name!r} is not a valid branch or tag name{detail}: use letters, digits, '_', "
            "'-', '.', '/' (not starting with '-'), and not HEAD"
        )


class RefInUse(StashError):
    """A ref cannot be removed while it is in use (the current branch)."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(
            f"cannot delete {kind} {name!r}: it is the current branch; "
            "check out another branch first"
        )


class WriteConflict(StashError):
    """Other writers kept changing what this write depends on, past every retry."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"{what}; nothing was written, try again")


class InvalidArguments(StashError):
    """Arguments that contradict each other or are out of range."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class DriverMissing(StashError):
    """The database driver a store URL needs is not installed."""

    def __init__(self, location: str, extra: str | None, why: str) -> None:
        self.location = location
        self.extra = extra
        hint = f" (pip install 'stashdb[{extra}]')" if extra else ""
        super().__init__(
            f"cannot open {location}: its database driver is not installed{hint}: {why}"
        )


class ViewerFailed(StashError):
    """``stashdb ui`` could not start: its packages are missing, or its server did not come up."""

    def __init__(self, why: str, *, missing: bool = False) -> None:
        self.why = why
        hint = " (pip install 'stashdb[ui]')" if missing else ""
        super().__init__(f"cannot start the history viewer: {why}{hint}")


class ScriptNotFound(StashError):
    """The script to run does not exist or cannot be read."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"cannot run {path}: {why}")


class NotASessionFile(StashError):
    """A file given as a dill session or module file is not one."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(
            f"{path} is not a dill session file ({why}); give a file written by "
            "dill.dump_session, dill.dump_module or sessionstash.save_workspace"
        )


class ExportError(StashError):
    """A snapshot cannot be written to a file in the form asked for."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"cannot write {path}: {why}; nothing was written")


class NothingToUndo(StashError):
    """There is no earlier snapshot of this session to go back to."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)


class NotABranch(StashError):
    """A name given as a branch to commit to is a tag."""

    def __init__(self, name: str, kind: str, commit_id: str) -> None:
        self.name = name
        self.kind = kind
        self.commit_id = commit_id
        super().__init__(
            f"cannot commit to {name!r}: it is a {kind} (at {commit_id[:8]}), not a branch; "
            "commit to another branch name"
        )


class UnsavedValues(StashError):
    """A checkout would overwrite or remove values that no snapshot holds."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        listed = ", ".join(names[:10]) + (" …" if len(names) > 10 else "")
        super().__init__(
            f"checkout would overwrite or remove {listed}, which no snapshot holds: commit "
            "them first (then undo can bring them back), or force the checkout"
        )


class StoreDamaged(StashError):
    """The store's tables or rows hold what no stashdb wrote: damage, or a hostile store."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(
            f"the store is damaged: {what}; run `stashdb verify` to see what else is affected"
        )


class BadBundle(StashError):
    """Bytes given as a bundle (a session's state, an export) are not a whole, sound one."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"not a sound stashdb bundle: {why}; nothing was restored or stored")


class SessionError(StashError):
    """A session's worker could not finish an execution; the session is back at a saved state.

    ``restored_from`` is the commit the session's state was restored from (None
    when it had none yet: the state is empty).
    """

    def __init__(self, what: str, restored_from: str | None) -> None:
        self.restored_from = restored_from
        back = (
            f"the session is back at the state of commit {restored_from[:8]}, restored from the "
            "store" if restored_from else "the session starts again from an empty state"
        )
        super().__init__(f"{what}; {back}")


class ExecutionTimeout(SessionError, TimeoutError):
    """An execution ran past its timeout and its worker was killed."""

    def __init__(self, seconds: float, restored_from: str | None) -> None:
        self.seconds = seconds
        super().__init__(f"the code ran longer than {seconds:g} s and was stopped", restored_from)


class WorkerCrashed(SessionError):
    """The worker process died during an execution (``exit_code`` or ``signal`` says how)."""

    def __init__(
        self, exit_code: int | None, signal: int | None, restored_from: str | None
    ) -> None:
        self.exit_code = exit_code
        self.signal = signal
        how = f"was killed by signal {signal}" if signal else f"exited with status {exit_code}"
        super().__init__(f"the worker running the code {how}", restored_from)


class MemoryLimitExceeded(SessionError):
    """The code used more memory than the session's ``memory_limit`` allows."""

    def __init__(self, limit: int, restored_from: str | None) -> None:
        self.limit = limit
        super().__init__(f"the code used more than its memory limit of {limit:,} bytes",
                         restored_from)


class ExecutionFailed(StashError):
    """The code of an execution raised (`ExecutionResult.raise_for_error`)."""

    def __init__(self, error_type: str, message: str, traceback: str) -> None:
        self.type = error_type
        self.message = message
        self.traceback = traceback
        super().__init__(f"the code raised {error_type}: {message}")


class SessionClosed(StashError):
    """A closed session was asked to do something."""

    def __init__(self, branch: str) -> None:
        self.branch = branch
        super().__init__(
            f"session {branch!r} is closed; Session.resume({branch!r}) opens it again"
        )


class CallbackError(StashError):
    """A host callback failed in a way that cannot reach the code as its own exception.

    Raised inside a session's code: the callback is missing, or the exception
    it raised cannot cross to the worker (it could not be pickled).
    """

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(f"callback {name!r} failed: {why}")


class RemoteNotFound(StashError):
    """A remote was named that this store does not have."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        have = f"it has {', '.join(known)}" if known else "it has none"
        super().__init__(f"this store has no remote {name!r} ({have}); add it first")


class RemoteExists(StashError):
    """A remote is added under a name the store uses already."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        super().__init__(f"this store has a remote {name!r} already ({url}); remove it first")


class NotFastForward(StashError):
    """A branch would move to a commit not built on where it is: commits would be lost."""

    def __init__(self, where: str, ref: str, at: str, to: str, advice: str) -> None:
        self.where = where
        self.ref = ref
        self.at = at
        self.to = to
        super().__init__(
            f"{where} branch {ref!r} is at {at[:12]}, which {to[:12]} does not build on: "
            f"moving it would drop commits; {advice}"
        )


class TransferRefused(StashError):
    """History cannot move between these two stores (as they are); nothing was sent."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"cannot send history: {why}")


class FetchFailed(StashError):
    """A lazy clone could not fetch a value's data from the store it was cloned from."""

    def __init__(self, remote: str, why: str) -> None:
        self.remote = remote
        self.why = why
        super().__init__(
            f"the data of this value is not here yet and could not be fetched from "
            f"{remote}: {why}; reach that store again, or copy all data while you can"
        )


class SnapshotLost(StashError):
    """A snapshot made in the background did not land (its process died, say).

    Nothing else is lost: the snapshots before it are in the store, and the
    next snapshot captures what this one held.
    """

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)
