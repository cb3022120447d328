"""Commands that make and restore snapshots: ``init``, ``commit``, ``checkout``."""

from __future__ import annotations

import contextlib
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

import stashdb
from stashdb import render
from stashdb.cli.app import (
    Json,
    Safe,
    Store,
    Trust,
    app,
    err,
    lock_timeout,
    open_store,
    out,
    print_json,
    progress,
    split_names,
)
from stashdb.errors import InvalidArguments
from stashdb.scripts import ScriptCommit


@app.command()
def init(
    path: Annotated[
        str, typer.Argument(metavar="PATH", help="Directory (or database URL) for the store.")
    ] = ".",
    encrypt: Annotated[
        bool, typer.Option("--encrypt", help="Seal its data under a store key kept in your "
                                             "key directory (docs/security.md).")
    ] = False,
) -> None:
    """Create a store: .stashdb/ under PATH (default: here).

    Example: stashdb init ~/projects/churn
    """
    existed = "://" not in path and (Path(path) / ".stashdb" / "stash.db").is_file()
    repo = stashdb.init(path, lock_timeout=lock_timeout(), encrypt=encrypt)
    verb = "Reinitialized existing" if existed else "Initialized empty"
    sealed = repo.storage.sealer
    how = f" (encrypted: store key {sealed.key_id})" if sealed.encrypted else ""
    out.print(f"{verb} stashdb store in {render.markup_safe(repo.location)}{how}")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def commit(
    script: Annotated[
        str | None,
        typer.Argument(
            metavar="SCRIPT", help="Python script to run as __main__; its globals are committed."
        ),
    ] = None,
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ARGS", help="Arguments for the script (after -- if they look like options)."
        ),
    ] = None,
    message: Annotated[str, typer.Option(
        "-m", "--message", metavar="MESSAGE", help="What this snapshot is.")] = "",
    source: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="FILE", help="Import a dill session/module or sessionstash file."
        ),
    ] = None,
    branch: Annotated[
        str | None, typer.Option(metavar="BRANCH", help="Commit to this branch.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAMES", help="Only these names (glob patterns; repeat or comma-separate)."
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(metavar="NAMES", help="Leave these names out (glob patterns)."),
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
    if script is None and source is None:
        raise InvalidArguments("give a script to run (stashdb commit SCRIPT.py) or --from FILE")
    if script is not None and source is not None:
        raise InvalidArguments("give a script to run or --from FILE, not both")
    names = {"only": split_names(only), "exclude": split_names(exclude)}
    if source is not None:
        _commit_file(source, message, branch, names, store, as_json)
    else:
        assert script is not None
        _commit_script(script, list(args or []), message, branch, names, store, as_json)


def _commit_file(
    source: str, message: str, branch: str | None, names: dict[str, Any], store: str | None,
    as_json: bool,
) -> None:
    from stashdb.workspace.dillfiles import read_session
    from stashdb.workspace.main_module import main_module

    repo = open_store(store, create=True)
    with main_module(read_session(source)) as module, progress("committing") as bar:
        made = repo.commit(
            message or f"imported {Path(source).name}", namespace=module.__dict__,
            branch=branch, progress=bar, **names,
        )
    _report_commit(made, as_json)


def _commit_script(
    script: str, args: list[str], message: str, branch: str | None, names: dict[str, Any],
    store: str | None, as_json: bool,
) -> None:
    from stashdb.scripts import commit_script, load_script

    code = load_script(script)  # a missing or broken script fails before any store is made
    repo = open_store(store, create=True)
    # With --json, stdout carries only the JSON: the script prints to stderr.
    stdout = sys.stdout
    script_output = contextlib.redirect_stdout(sys.stderr) if as_json else nullcontext()

    def report(done: ScriptCommit) -> None:
        with contextlib.redirect_stdout(stdout):
            _report_script(done, as_json, bar)

    with progress("committing", lazy=True) as bar, script_output:
        done = commit_script(
            repo, script, args, message=message, branch=branch, progress=bar, code=code,
            report=report, **names,
        )
    if done.exit_code:
        raise typer.Exit(done.exit_code)


def _report_script(done: ScriptCommit, as_json: bool, bar: Any) -> None:
    """What `commit_script` did, once its state is committed (also before an os._exit)."""
    if bar is not None:
        bar.close()
    if done.run.traceback:
        sys.stderr.write(done.run.traceback)
    if done.commit is not None:
        _report_commit(done.commit, as_json)
    if done.run.os_exit:
        state = "its state is committed" if done.commit else "its state is not in the store"
        err.print(f"stashdb: the script called os._exit({done.run.exit_code}); {state}")
    if done.interrupted:
        what = f"{done.commit.short_id} was committed" if done.commit else "nothing was committed"
        err.print(f"stashdb: interrupted while committing: {what}")
    if done.problem is not None:
        reason = render.markup_safe(" ".join(str(done.problem).split()))
        if done.rescued is not None:
            where = render.markup_safe(done.rescued)
            err.print(f"[red]stashdb: error:[/red] {reason}; the run's state is saved in "
                      f"{where} instead (stashdb log --store {where})", soft_wrap=True)
        else:
            err.print(f"[red]stashdb: error:[/red] {reason}; the run's state could not be "
                      "saved anywhere else either", soft_wrap=True)


def _report_commit(made: stashdb.Commit, as_json: bool) -> None:
    if as_json:
        print_json(render.commit_json(made, entries=True))
    else:
        out.print(render.commit_report(made), overflow="ellipsis")


@app.command()
def checkout(
    rev: Annotated[str, typer.Argument(metavar="REV", help="Commit to restore.")],
    only: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAMES", help="Only these names (repeat, or comma-separate: --only df,model)."
        ),
    ] = None,
    shell: Annotated[
        bool, typer.Option("--shell", help="Start a shell holding them (the default).")
    ] = False,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to", metavar="FILE", help="Write them to FILE for dill.load_module(FILE)."
        ),
    ] = None,
    trust: Trust = False,
    safe: Safe = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Restore a snapshot, or some of its names, into a shell or a dill module file.

    The shell is IPython when it is installed, else the standard REPL. The
    commit must be signed by a key you trust (docs/security.md), unless
    --trust; --safe loads only plain data, numpy and pandas, whoever wrote it.

    Example: stashdb checkout cleaned --only df --to df.pkl
    """
    if shell and to is not None:
        raise InvalidArguments("choose --shell or --to FILE, not both")
    from stashdb.workspace.dillfiles import write_module
    from stashdb.workspace.main_module import main_module

    repo = open_store(store)
    with main_module() as module, progress("restoring") as bar:
        report = repo.checkout(
            rev, only=split_names(only), namespace=module.__dict__, merge=True, progress=bar,
            trust=trust, safe=safe,
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
    err.print(render.printable(banner), markup=False)
    IPython.start_ipython(argv=["--no-confirm-exit", "--no-banner"], user_ns=namespace)


