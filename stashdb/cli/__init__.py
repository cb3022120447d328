"""The ``stashdb`` command line (typer + rich): `app`, and `main` for the console script.

`app` holds the shared options and the error boundary; the commands live in
`snapshots` (init, commit, checkout), `browse` (log, show, diff, history,
status, du), `refs` (tag, branch, reset), `upkeep` (verify, gc, prune, migrate) and
`sessions` (session list|show|log|resume, repl; the REPL itself is `repl`),
`keys` (keys …), `sharing` (export, import, remote, clone, push, fetch, pull)
`migrate` (import-dill) and `viewer` (ui).
"""

from stashdb.cli import (  # noqa: F401 (importing them adds their commands)
    browse,
    keys,
    migrate,
    refs,
    sessions,
    sharing,
    snapshots,
    upkeep,
    viewer,
)
from stashdb.cli.app import app, main

__all__ = ["app", "main"]
