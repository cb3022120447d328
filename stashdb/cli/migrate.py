"""Commands for coming from other tools: ``import-dill``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import stashdb
from stashdb import render
from stashdb.cli.app import Json, Store, app, err, open_store, out, print_json, progress
from stashdb.errors import NotASessionFile, StashError


@app.command("import-dill")
def import_dill(
    ctx: typer.Context,
    files: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE",
            help="dill session or module files, or sessionstash files: one commit each, "
            "in this order.",
        ),
    ],
    branch: Annotated[
        str | None, typer.Option(metavar="BRANCH", help="Commit to this branch.")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Turn dill session files and sessionstash files into commits, one per file, in order.

    Each commit's message names its file. Reading a file runs the pickles in
    it, as loading it with dill would: import only files you trust. If a file
    cannot be read, the files before it stay imported, and the error says which.

    Example: stashdb import-dill monday.pkl tuesday.pkl --store analysis.db
    """
    for source in files:  # a mistyped name fails before anything is committed
        if not Path(source).is_file():
            raise NotASessionFile(source, "no such file")
    repo = open_store(store, create=True)
    done: list[tuple[str, stashdb.Commit]] = []
    for source in files:
        try:
            made = _import_file(repo, source, branch)
        except StashError as exc:
            if not done or ctx.meta.get("stashdb.debug"):
                raise
            _report_partial(exc, done)
            raise typer.Exit(1) from None
        done.append((source, made))
        if not as_json:
            out.print(render.commit_report(made), overflow="ellipsis")
    if as_json:
        print_json([render.commit_json(made, entries=True) | {"file": source}
                    for source, made in done])


def _import_file(repo: stashdb.Repo, source: str, branch: str | None) -> stashdb.Commit:
    """One file as one commit, its names restored in a fresh ``__main__`` first."""
    from stashdb.workspace.dillfiles import read_session
    from stashdb.workspace.main_module import main_module

    with main_module(read_session(source)) as module, progress("importing") as bar:
        return repo.commit(
            f"imported {Path(source).name}", namespace=module.__dict__, branch=branch,
            progress=bar,
        )


def _report_partial(exc: StashError, done: list[tuple[str, stashdb.Commit]]) -> None:
    """The error of a file after others were imported: one line, saying what is in the store."""
    imported = ", ".join(f"{source} as {made.short_id}" for source, made in done)
    reason = render.markup_safe(" ".join(str(exc).split()))
    err.print(
        f"[red]stashdb: error:[/red] {reason}; imported before it: "
        f"{render.markup_safe(imported)}", soft_wrap=True,
    )
