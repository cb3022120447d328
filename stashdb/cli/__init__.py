"""The ``stashdb`` command line (typer + rich): `app`, and `main` for the console script.

`app` holds the shared options and the error boundary; the commands live in
`snapshots` (init, commit, checkout), `browse` (log, show, diff, history,
status, du), `refs` (tag, branch, reset), `upkeep` (verify, gc, prune, migrate) and
`sessions` (session list|show|log|resume, repl; the REPL itself is `repl`).
"""

from stashdb.cli import browse, keys, refs, sessions, snapshots, upkeep  # noqa: F401 (add commands)
from stashdb.cli.app import app, main

__all__ = ["app", "main"]
