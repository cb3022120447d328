"""A drop-in for sessionstash: ``from stashdb.compat import sessionstash``.

The same two functions with sessionstash 0.1.1's signatures, defaults, return
values and messages, and the same command (``save FILE``, ``load FILE
[--shell]``), run as ``python -m stashdb.compat.sessionstash``::

    from stashdb.compat import sessionstash as ss

    counter = 42
    ss.save_workspace("snapshot.dill")   # a commit in the store snapshot.dill
    del counter
    ss.load_workspace("snapshot.dill")   # the latest commit, back into globals()

What differs, on purpose:

- The file is a stashdb store (one SQLite file): every save is a commit,
  saving again writes only the values that changed, and ``stashdb log
  --store snapshot.dill`` lists the saves.
- A value that cannot be pickled (a generator, a lock, an open connection) is
  skipped and the rest is saved; a warning names each one and says why.
  sessionstash fails the whole save instead.
- Modules are saved as module entries (re-imported on load), and variables
  named like ``dict`` methods (``keys``, ``copy``, ``update`` …) are saved:
  sessionstash leaves them out without a word.
- A load checks that the commit was signed by a key you trust before it
  unpickles anything (docs/security.md); ``trust=True`` (``load --trust``),
  which sessionstash does not have, loads a store someone else wrote.

An old sessionstash (or dill) pickle file still loads: the file runs as
sessionstash would run it, so load only files you trust.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

__all__ = ["load_workspace", "main", "save_workspace"]


def save_workspace(path: str | Path, namespace: dict[str, object] | None = None) -> None:
    """Save ``namespace`` (default: the caller's local scope) to the store at ``path``.

    At a module's top level (a script, a notebook cell) the local scope is
    the globals. ``path`` is created as a store if it does not exist; an old
    pickle file there is replaced by one, as sessionstash overwrites it. Names
    starting with ``_`` are left out. Values that cannot be pickled are
    skipped, with a `UserWarning` naming them; the rest is saved.

    Raises:
        NotAStore: ``path`` is some other SQLite database.
        StoreWriteError: the directory of ``path`` does not exist, or the
            disk is full.
    """
    from stashdb.compat.storefile import open_for_saving, warn_skipped

    path = Path(path)
    if namespace is None:
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        namespace = caller.f_locals if caller is not None else {}
    made = open_for_saving(path).commit("save_workspace", namespace=namespace)
    print(f"✅ Workspace saved → {path}")
    warn_skipped(made, path, UserWarning, stacklevel=2)


def load_workspace(
    path: str | Path, namespace: dict[str, object] | None = None, *, trust: bool = False
) -> None:
    """Load the latest save at ``path`` into ``namespace`` (default: the caller's globals).

    The saved names are set (others are kept, as ``dict.update`` keeps them).
    ``path`` may also be an old sessionstash or dill pickle file: it is
    unpickled as sessionstash would, so load only files you trust. A value
    that cannot be restored here is left as it was, with a `UserWarning`.
    ``trust``: load a save even if it is not signed by a key you trust (one
    written by someone else), as sessionstash loads any file.

    Raises:
        NotASessionFile: ``path`` is missing, or not a store nor a pickle file.
        UntrustedSnapshot: the latest save is not signed by a key you trust.
    """
    from stashdb.compat.storefile import find_store, loaded_names, warn_not_restored

    path = Path(path)
    if namespace is None:
        frame = inspect.currentframe()
        caller = frame.f_back if frame is not None else None
        namespace = caller.f_globals if caller is not None else {}
    repo = find_store(path)
    if repo is None:
        from stashdb.workspace.dillfiles import read_session

        loaded = loaded_names(read_session(path))
        namespace.update(loaded)
        count = len(loaded)
    else:
        report = repo.checkout(namespace=namespace, merge=True, trust=trust)
        count = len(report.restored) + len(report.needed)
        warn_not_restored(report, path, stacklevel=2)
    print(f"✅ Workspace restored ← {path} ({count} objects)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stashdb.compat.sessionstash",
        description="Snapshot and restore Python interpreter sessions.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    save = subparsers.add_parser("save", help="Save current session to a file.")
    save.add_argument("file", type=Path, help="Output pickle file.")
    load = subparsers.add_parser("load", help="Load a session from a file.")
    load.add_argument("file", type=Path, help="Pickle file to load.")
    load.add_argument(
        "--shell",
        action="store_true",
        help="Enter an IPython shell after loading the session (if IPython is available).",
    )
    load.add_argument(
        "--trust", action="store_true",
        help="Load it even if it is not signed by a key you trust (stashdb keys trust).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """sessionstash's command: ``save FILE`` or ``load FILE [--shell]``; returns the exit status.

    ``save`` saves the command's own session, which holds none of your
    values (sessionstash's saves just its parsed arguments): save from Python
    with `save_workspace`. ``load`` loads into a fresh ``__main__`` and, with
    ``--shell``, starts IPython (or the standard REPL) on it; ``--trust`` as
    for `load_workspace`. A mistake is one line on stderr and exit status 1.
    """
    from stashdb.errors import StashError
    from stashdb.workspace.main_module import main_module

    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "save":
            save_workspace(args.file, namespace={})
            return 0
        with main_module() as module:
            load_workspace(args.file, namespace=module.__dict__, trust=args.trust)
            if args.shell:
                _shell(module.__dict__)
    except StashError as exc:
        print(f"{parser.prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


def _shell(namespace: dict[str, Any]) -> None:
    try:
        import IPython
    except ImportError:
        print("IPython is not installed. Session loaded; falling back to standard REPL.")
        import code

        code.interact(local=namespace)
        return
    IPython.start_ipython(argv=["--no-confirm-exit"], user_ns=namespace)


if __name__ == "__main__":
    sys.exit(main())
