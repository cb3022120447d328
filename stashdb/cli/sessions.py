"""Commands for sessions: ``session list|show|log|resume`` and ``repl``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stashdb import render
from stashdb.cli.app import Json, Store, app, open_store, out, print_json
from stashdb.errors import RefNotFound
from stashdb.render import markup_safe as safe
from stashdb.repo import Repo

session_app = typer.Typer(
    help="Sessions: code run step by step, every step a commit (docs/sessions.md).",
    no_args_is_help=True,
)
app.add_typer(session_app, name="session")

Branch = Annotated[str, typer.Argument(metavar="BRANCH", help="The session's branch.")]
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", metavar="SECONDS", help="Stop a statement after SECONDS."),
]
Workdir = Annotated[
    Path | None,
    typer.Option("--workdir", metavar="DIR",
                 help="Run in DIR; its files are part of every snapshot."),
]
InProcess = Annotated[
    bool,
    typer.Option("--in-process", help="Run statements in this process (faster; a crash ends "
                                      "the REPL)."),
]


@session_app.command("list")
def list_sessions(store: Store = None, as_json: Json = False) -> None:
    """List the sessions of the store: branch, executions, last activity, last step.

    Example: stashdb session list
    """
    from stashdb.session import catalog

    repo = open_store(store)
    rows = []
    for record in catalog.records(repo):
        ref = repo.storage.reader.find_ref(record.branch)
        tip = repo.show(ref.commit_id) if ref is not None else None
        count = catalog.executions_so_far(repo, record.branch) if tip is not None else 0
        rows.append((record, count, tip))
    if as_json:
        print_json([
            render.session_json(r.branch, n, tip, r.host, r.created, r.workdir)
            for r, n, tip in rows
        ])
    elif rows:
        out.print(render.sessions_table([(r.branch, n, tip, r.host) for r, n, tip in rows]))
    else:
        out.print("no sessions (stashdb repl starts one)")


@session_app.command("show")
def show_session(branch: Branch, store: Store = None, as_json: Json = False) -> None:
    """Show a session's state now: every name and file with its type, size and preview.

    Example: stashdb session show session/3f2a9c1d
    """
    from stashdb.session import catalog

    repo = open_store(store)
    tip = repo.show(_branch_tip(repo, branch))
    record = catalog.find(repo, branch)
    count = catalog.executions_so_far(repo, branch)
    if as_json:
        created = record.created if record else tip.time.timestamp()
        print_json(render.session_json(branch, count, tip, record.host if record else "",
                                       created, record.workdir if record else None)
                   | {"entries": [render.entry_json(e) for e in tip.entries]})
        return
    out.print(f"session [bold]{safe(branch)}[/bold]: {count} executions"
              + (f", started on {safe(record.host)}" if record else ", not recorded as one")
              + (f", working directory {safe(record.workdir)}" if record and record.workdir
                 else ""))
    out.print(render.commit_header(tip))
    out.print(render.entries_table(tip.entries))


@session_app.command("log")
def log_session(
    branch: Branch,
    n: Annotated[int | None, typer.Option("-n", min=0, metavar="N",
                                           help="Show at most N steps.")] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show a session's steps, newest first, with the names each added, changed and removed.

    Example: stashdb session log session/3f2a9c1d -n 20
    """
    repo = open_store(store)
    _branch_tip(repo, branch)
    commits = repo.log(branch=branch, limit=n)
    counts = repo.change_counts(commits)
    if as_json:
        print_json([render.commit_json(c, counts.get(c.id)) for c in commits])
        return
    out.print(render.log_table(commits, counts, {}))


@session_app.command("resume")
def resume_session(
    branch: Branch,
    store: Store = None,
    timeout: Timeout = None,
    workdir: Workdir = None,
    in_process: InProcess = False,
) -> None:
    """Open a REPL on an existing session, at its last state (every statement a snapshot).

    Example: stashdb session resume session/3f2a9c1d
    """
    from stashdb.cli.repl import run_repl

    repo = open_store(store)
    _branch_tip(repo, branch)
    status = run_repl(repo, branch, timeout=timeout, workdir=workdir, isolated=not in_process)
    if status:
        raise typer.Exit(status)


@app.command()
def repl(
    branch: Annotated[
        str | None,
        typer.Option("--branch", metavar="BRANCH",
                     help="Resume this session if it exists, else start it (default: a new "
                          "session/<id>)."),
    ] = None,
    store: Store = None,
    timeout: Timeout = None,
    workdir: Workdir = None,
    in_process: InProcess = False,
) -> None:
    """An interactive Python whose every statement is a snapshot (:undo goes back one).

    Statements can be piped on stdin: each top-level statement is one step.
    :undo, :log and :help are commands; Ctrl-D ends (the state stays on the branch).

    Example: stashdb repl --branch try-1 < steps.py
    """
    from stashdb.cli.repl import run_repl

    repo = open_store(store, create=True)
    status = run_repl(repo, branch, timeout=timeout, workdir=workdir, isolated=not in_process)
    if status:
        raise typer.Exit(status)


def _branch_tip(repo: Repo, branch: str) -> str:
    ref = repo.storage.reader.find_ref(branch)
    if ref is None or ref.kind != "branch":
        raise RefNotFound("branch", branch)
    return str(ref.commit_id)
