"""stashdb: version control for the live state of Python programs.

    import stashdb
    stashdb.commit("cleaned data")            # every global, pickled per variable
    stashdb.checkout("HEAD~1", only=["df"])   # bring back just df, as it was

``import stashdb`` is light: SQLAlchemy, dill and the storage layers load on
first use (module ``__getattr__``, PEP 562).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from stashdb import errors
from stashdb.errors import (
    AmbiguousRevision,
    BadBundle,
    CallbackError,
    CorruptChunk,
    DriverMissing,
    ExecutionFailed,
    ExecutionTimeout,
    ExportError,
    FetchFailed,
    InvalidArguments,
    InvalidRefName,
    KeyProblem,
    MemoryLimitExceeded,
    NameNotInNamespace,
    NameNotInSnapshot,
    NotABranch,
    NotASessionFile,
    NotAStore,
    NotFastForward,
    NothingToUndo,
    RefExists,
    RefInUse,
    RefNotFound,
    RemoteExists,
    RemoteNotFound,
    RestoreError,
    RevisionNotFound,
    ScriptNotFound,
    SessionClosed,
    SessionError,
    SnapshotLost,
    StashError,
    StoreDamaged,
    StoreKeyMissing,
    StoreLocked,
    StoreNotFound,
    StoreUnreachable,
    StoreWriteError,
    TamperedData,
    TransferRefused,
    UnsafeGlobal,
    UnsavedValues,
    UnsupportedFormat,
    UntrustedSnapshot,
    VersionMismatchWarning,
    ViewerFailed,
    WorkerCrashed,
    WriteConflict,
)
from stashdb.pickling import stored_names as _stored_names

__version__ = "0.1.0"

# Stored pickles name stashdb.serialize and stashdb.reducers (format 1): importable
# by anyone who has stashdb, so that plain pickle.load reads what we write.
_stored_names.StoredModules.install()

_LAZY = {
    "init": "stashdb.api",
    "close_all": "stashdb.api",
    "open": "stashdb.api",
    "commit": "stashdb.api",
    "checkout": "stashdb.api",
    "log": "stashdb.api",
    "show": "stashdb.api",
    "diff": "stashdb.api",
    "tag": "stashdb.api",
    "branch": "stashdb.api",
    "at": "stashdb.api",
    "history": "stashdb.api",
    "migrate": "stashdb.api",
    "Migration": "stashdb.api",
    "find_store": "stashdb.api",
    "clone": "stashdb.api",
    "store_url": "stashdb.api",
    "ui": "stashdb.viewer.launch",
    "Viewer": "stashdb.viewer.launch",
    "Repo": "stashdb.repo",
    "PreparedCommit": "stashdb.repo",
    "KnownState": "stashdb.repo",
    "Snapshot": "stashdb.repo",
    "Commit": "stashdb.model",
    "Entry": "stashdb.model",
    "Diff": "stashdb.model",
    "Change": "stashdb.model",
    "CheckoutReport": "stashdb.model",
    "Skipped": "stashdb.model",
    "Failure": "stashdb.model",
    "Version": "stashdb.model",
    "Rev": "stashdb.model",
    "Ref": "stashdb.model",
    "Origin": "stashdb.model",
    "Transfer": "stashdb.model",
    "RefChange": "stashdb.model",
    "Session": "stashdb.session",
    "AsyncSession": "stashdb.session",
    "ExecutionResult": "stashdb.session",
    "ErrorInfo": "stashdb.session",
}

#: ``%load_ext stashdb`` finds these; they import IPython, so they stay out of __all__.
_IPYTHON = {
    "load_ipython_extension": "stashdb.ipython",
    "unload_ipython_extension": "stashdb.ipython",
}

__all__ = [*errors.__all__, "__version__", *_LAZY]

if TYPE_CHECKING:
    from stashdb.api import (
        Migration,
        at,
        branch,
        checkout,
        clone,
        close_all,
        commit,
        diff,
        find_store,
        history,
        init,
        log,
        migrate,
        open,
        show,
        store_url,
        tag,
    )
    from stashdb.model import (
        Change,
        CheckoutReport,
        Commit,
        Diff,
        Entry,
        Failure,
        Origin,
        Ref,
        RefChange,
        Rev,
        Skipped,
        Transfer,
        Version,
    )
    from stashdb.repo import KnownState, PreparedCommit, Repo, Snapshot
    from stashdb.session import AsyncSession, ErrorInfo, ExecutionResult, Session
    from stashdb.viewer.launch import Viewer, ui


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name) or _IPYTHON.get(name)
    if module is None:
        raise AttributeError(f"module 'stashdb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
