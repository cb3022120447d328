"""Commands that move history between stores: export, import, remote, clone, push, fetch, pull."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import stashdb
from stashdb.cli.app import Json, Store, app, open_store, out, print_json, progress
from stashdb.errors import StoreNotFound
from stashdb.model import Transfer
from stashdb.render import markup_safe as safe

remote_app = typer.Typer(help="List, add and remove remotes (stores to push to and pull from).",
                         no_args_is_help=True)
app.add_typer(remote_app, name="remote")

Remote = Annotated[
    str | None,
    typer.Argument(metavar="REMOTE", help="Remote to use (default: origin, or the only one)."),
]
Refs = Annotated[
    list[str] | None, typer.Argument(metavar="REF...", help="Branches or tags.", show_default=False)
]


def _report(done: Transfer, as_json: bool) -> None:
    if as_json:
        print_json({
            "commits": done.commits, "objects": done.objects, "chunks": done.chunks,
            "bytes": done.bytes,
            "refs": [{"name": r.name, "kind": r.kind, "old": r.old, "new": r.new,
                      "what": r.what, "why": r.why} for r in done.refs],
        })
    else:
        out.print(safe(str(done)))


@app.command("export")
def export(
    revs: Annotated[list[str], typer.Argument(
        metavar="REV...", help="Branches, tags or commits; A..B for what B adds to A.")],
    output: Annotated[Path, typer.Option("-o", "--output", metavar="FILE",
                                         help="The bundle file to write.")],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Write commits, their history and everything they reach to one bundle file.

    Example: stashdb export main -o analysis.bundle
    """
    repo = open_store(store)
    _report(repo.export(revs, output), as_json)


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A bundle from stashdb export.")],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Add a bundle's history to this store (what it has already is skipped).

    Example: stashdb import analysis.bundle
    """
    try:
        repo = open_store(store)
    except StoreNotFound:
        # A new store only for a sound bundle: a wrong file leaves no store behind.
        from stashdb.remotes import history_file

        with history_file(file):
            pass
        repo = open_store(store, create=True)
    _report(repo.import_bundle(file), as_json)


@remote_app.command("add")
def remote_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="What to call it (origin, team).")],
    url: Annotated[str, typer.Argument(metavar="URL",
                                       help="A store: a directory, a .db file or a database URL.")],
    store: Store = None,
) -> None:
    """Remember another store as a remote.

    Example: stashdb remote add team postgresql+psycopg://db.example/stash
    """
    repo = open_store(store)
    made = repo.add_remote(name, stashdb.store_url(url))
    out.print(f"remote {safe(made.name)} → {safe(_shown(made.url))}")


@remote_app.command("remove")
def remote_remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The remote to forget.")],
    store: Store = None,
) -> None:
    """Forget a remote and its remote-tracking refs (the commits stay).

    Example: stashdb remote remove team
    """
    gone = open_store(store).remove_remote(name)
    out.print(f"removed remote {safe(gone.name)}")


@remote_app.command("list")
def remote_list(store: Store = None, as_json: Json = False) -> None:
    """List remotes and their URLs (passwords hidden).

    Example: stashdb remote list
    """
    found = open_store(store).remotes()
    if as_json:
        print_json([{"name": r.name, "url": _shown(r.url)} for r in found])
    elif not found:
        out.print("no remotes")
    for r in [] if as_json else found:
        typer.echo(f"{r.name}\t{_shown(r.url)}")  # one line each, never wrapped


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: shown as given
        return url


@app.command()
def clone(
    url: Annotated[str, typer.Argument(metavar="URL",
                                       help="The store to copy: a directory, file or URL.")],
    directory: Annotated[str, typer.Argument(metavar="DIR",
                                             help="Where the copy goes (its .stashdb/).")] = ".",
    lazy: Annotated[bool, typer.Option(
        "--lazy", help="Copy commits only; each value's data comes when checked out.")] = False,
    as_json: Json = False,
) -> None:
    """Copy a store, with every branch and tag, into a new one whose remote origin is URL.

    Example: stashdb clone --lazy postgresql+psycopg://db.example/stash work
    """
    with progress("cloning") as bar:
        repo, done = stashdb.clone(url, directory, lazy=lazy, progress=bar)
    _report(done, as_json)
    if not as_json:
        out.print(f"cloned into {safe(repo.location)}" + (" (lazy)" if lazy else ""))


@app.command()
def push(
    remote: Remote = None,
    refs: Refs = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Move the remote's branch even if that drops its commits.")] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Send branches or tags (default: the current branch) to a remote: only what it lacks.

    Example: stashdb push origin main
    """
    repo = open_store(store)
    with progress("pushing") as bar:
        done = repo.push(remote, refs or (), force=force, progress=bar)
    _report(done, as_json)


@app.command()
def fetch(
    remote: Remote = None,
    refs: Refs = None,
    all_data: Annotated[bool, typer.Option(
        "--all-data", help="In a lazy clone: copy every value's data too.")] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Copy a remote's branches (as REMOTE/BRANCH) and tags, and what they reach.

    Example: stashdb fetch --all-data
    """
    repo = open_store(store)
    with progress("fetching") as bar:
        done = repo.fetch(remote, refs or (), all_data=all_data, progress=bar)
    _report(done, as_json)


@app.command()
def pull(
    remote: Remote = None,
    refs: Refs = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Fetch, then move branches here (default: the current one) forward to the remote's.

    Example: stashdb pull origin main
    """
    repo = open_store(store)
    with progress("pulling") as bar:
        done = repo.pull(remote, refs or (), progress=bar)
    _report(done, as_json)
