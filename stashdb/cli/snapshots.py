"""Commands that make and restore snapshots: ``init``, ``commit``, ``checkout``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import CodeType
from typing import Annotated, Any

import typer

import stashdb
from stashdb import render
from stashdb.cli.app import (
    Json,
    Store,
    app,
    err,
    open_store,
    out,
    print_json,
    progress,
    split_names,
)
from stashdb.errors import InvalidArguments


@app.command()
def init(
    path: Annotated[str, typer.Argument(help="Directory (or database URL) for the store.")] = ".",
) -> None:
    """Create a store: .stashdb/ under PATH (default: here).

    Example: stashdb init ~/projects/churn
    """
    existed = "://" not in path and (Path(path) / ".stashdb" / "stash.db").is_file()
    repo = stashdb.init(path)
    verb = "Reinitialized existing" if existed else "Initialized empty"
    out.print(f"{verb} stashdb store in {repo.location}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def commit(
    script: Annotated[
        str | None,
        typer.Argument(help="Python script to run as __main__; its globals are committed."),
    ] = None,
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Arguments for the script (after -- if they look like options)."),
    ] = None,
    message: Annotated[str, typer.Option("-m", "--message", help="What this snapshot is.")] = "",
    source: Annotated[
        str | None,
        typer.Option("--from", help="Import a dill session/module or sessionstash file."),
    ] = None,
    branch: Annotated[
        str | None, typer.Option(help="Commit to this branch.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Only these names (glob patterns; repeat or comma-separate)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Leave these names out (glob patterns)."),
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Run SCRIPT and commit its globals when it ends, or import a session file with --from.

    If the script raises, its state is committed anyway (the message says how
    it failed), the traceback is printed, and the exit status is non-zero.
    Options after the script go to stashdb; put the script's own options after --.
    With --json, what the script prints goes to stderr.

    Example: stashdb commit -m 'baseline' train.py --epochs 3
    """
    if (script is None) == (source is None):
        raise InvalidArguments(
            "give a script to run (stashdb commit SCRIPT.py) or --from FILE, not both"
        )
    from stashdb.scripts import load_script

    # A missing or broken script fails before any store is made.
    code = load_script(script) if script is not None else None
    repo = open_store(store, create=True)

    def commit_namespace(text: str, namespace: dict[str, Any]) -> stashdb.Commit:
        with progress("committing") as bar:
            return repo.commit(
                text, namespace=namespace, branch=branch, only=split_names(only),
                exclude=split_names(exclude), progress=bar,
            )

    if source is not None:
        from stashdb.workspace.dillfiles import read_session
        from stashdb.workspace.main_module import main_module

        with main_module(read_session(source)) as module:
            made = commit_namespace(message or f"imported {Path(source).name}", module.__dict__)
        _report_commit(made, as_json)
        return
    assert script is not None and code is not None
    exit_code = _run_and_commit(script, list(args or []), code, message, as_json, commit_namespace)
    if exit_code:
        raise typer.Exit(exit_code)


def _run_and_commit(
    script: str,
    args: list[str],
    code: CodeType,
    message: str,
    as_json: bool,
    commit_namespace: Callable[[str, dict[str, Any]], stashdb.Commit],
) -> int:
    """Run the script, commit what it left (also when it failed); its exit status."""
    from stashdb.scripts import running_script

    # With --json, stdout carries only the JSON: the script prints to stderr.
    script_output = contextlib.redirect_stdout(sys.stderr) if as_json else nullcontext()
    with script_output, running_script(script, args, code) as run:
        text = message or f"run {Path(script).name}"
        if run.failure is not None:
            text = f"{text} [failed: {run.failure}]"
        made = commit_namespace(text, run.namespace)
    if run.traceback:
        sys.stderr.write(run.traceback)
    _report_commit(made, as_json)
    return run.exit_code


def _report_commit(made: stashdb.Commit, as_json: bool) -> None:
    if as_json:
        print_json(render.commit_json(made, entries=True))
    else:
        out.print(render.commit_report(made), overflow="ellipsis")


@app.command()
def checkout(
    rev: Annotated[str, typer.Argument(help="Commit to restore.")],
    only: Annotated[
        list[str] | None,
        typer.Option(help="Only these names (repeat, or comma-separate: --only df,model)."),
    ] = None,
    shell: Annotated[
        bool, typer.Option("--shell", help="Start a shell holding them (the default).")
    ] = False,
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Write them to FILE for dill.load_module(FILE)."),
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Restore a snapshot, or some of its names, into a shell or a dill module file.

    The shell is IPython when it is installed, else the standard REPL.

    Example: stashdb checkout cleaned --only df --to df.pkl
    """
    if shell and to is not None:
        raise InvalidArguments("choose --shell or --to FILE, not both")
    from stashdb.workspace.dillfiles import write_module
    from stashdb.workspace.main_module import main_module

    repo = open_store(store)
    with main_module() as module, progress("restoring") as bar:
        report = repo.checkout(
            rev, only=split_names(only), namespace=module.__dict__, merge=True, progress=bar
        )
        if to is not None:
            write_module(to, module)
    if as_json:
        print_json(render.checkout_json(report) | {"file": str(to) if to else None})
    else:
        into = f" into {to}" if to is not None else ""
        err.print(render.checkout_report(report, f"checked out {report.commit.short_id}{into}"))
    if to is None and not as_json:
        _interact(module.__dict__, f"stashdb: {report.commit.short_id} {report.commit.message}")
    if report.failed:
        raise typer.Exit(1)


def _interact(namespace: dict[str, Any], banner: str) -> None:
    """An interactive shell on ``namespace``: IPython if installed, else the standard REPL."""
    names = ", ".join(n for n in namespace if not n.startswith("_"))
    banner = f"{banner}\nnames: {names}"
    try:
        import IPython
    except ImportError:
        import code

        code.interact(banner=banner, local=namespace, exitmsg="")
        return
    err.print(banner, markup=False)
    IPython.start_ipython(argv=["--no-confirm-exit", "--no-banner"], user_ns=namespace)


