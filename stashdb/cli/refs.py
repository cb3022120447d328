"""Commands for names of commits: ``tag`` and ``branch``."""

from __future__ import annotations

from typing import Annotated

import typer

from stashdb import render
from stashdb.cli.app import Json, Store, app, open_store, out, print_json
from stashdb.errors import InvalidArguments
from stashdb.render import markup_safe as safe


def _refs_command(kind: str, name: str | None, rev: str, delete: str | None,
                  message: str | None, store: str | None, as_json: bool,
                  rename: str | None = None) -> None:
    repo = open_store(store)
    if rename is not None:
        if name is None:
            raise InvalidArguments("branch -m OLD NEW: give the new name too")
        moved = repo.rename_branch(rename, name)
        out.print(f"renamed branch {safe(rename)} to {safe(moved.name)}")
        return
    if delete is not None:
        removed = repo.delete_tag(delete) if kind == "tag" else repo.delete_branch(delete)
        out.print(f"deleted {kind} {safe(removed.name)} (was {removed.commit_id[:8]})")
        return
    if name is None:
        refs = repo.tags() if kind == "tag" else repo.branches()
        head = repo.head if kind == "branch" else None
        if as_json:
            print_json([render.ref_json(r, head) for r in refs])
        elif refs:
            out.print(render.refs_table(refs, head))
        else:
            out.print(f"no {kind}s")
        return
    made = repo.tag(name, rev, message=message) if kind == "tag" else repo.branch(name, rev)
    if as_json:
        print_json(render.ref_json(made))
    else:
        out.print(f"{kind} {safe(made.name)} → {made.commit_id[:8]}")


@app.command()
def tag(
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="Tag to create.")] = None,
    rev: Annotated[str, typer.Argument(metavar="REV", help="Commit to tag.")] = "HEAD",
    delete: Annotated[
        str | None, typer.Option("-d", "--delete", metavar="NAME", help="Delete this tag.")
    ] = None,
    message: Annotated[
        str | None, typer.Option("-m", "--message", metavar="MESSAGE", help="Tag message.")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """List tags, tag a commit (default HEAD), or delete a tag with -d.

    Example: stashdb tag cleaned HEAD~2 -m 'after dedup'
    """
    _refs_command("tag", name, rev, delete, message, store, as_json)


@app.command()
def branch(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="Branch to create.")
    ] = None,
    rev: Annotated[str, typer.Argument(metavar="REV", help="Where it starts.")] = "HEAD",
    delete: Annotated[
        str | None, typer.Option("-d", "--delete", metavar="NAME", help="Delete this branch.")
    ] = None,
    rename: Annotated[
        str | None,
        typer.Option("-m", "--move", metavar="OLD", help="Rename branch OLD to NAME."),
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """List branches (* marks the current one), start one at REV, delete one with -d,
    or rename one with -m OLD NEW.

    Example: stashdb branch experiment HEAD~1
    """
    _refs_command("branch", name, rev, delete, None, store, as_json, rename)


@app.command()
def reset(
    branch: Annotated[str, typer.Argument(metavar="BRANCH", help="Branch to move.")],
    rev: Annotated[str, typer.Argument(metavar="REV", help="Commit it moves to.")],
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Move BRANCH to REV (back, usually). The commits it leaves stay reachable by their ids.

    Example: stashdb reset main HEAD~2
    """
    moved, left = open_store(store).reset(branch, rev)
    if as_json:
        print_json(render.ref_json(moved) | {"was": left})
        return
    out.print(f"branch {safe(moved.name)} → {moved.commit_id[:8]} (was {left[:8]}: still "
              f"there as {left}, until pruned)")


