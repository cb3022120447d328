"""Commands that keep a store sound and small: ``verify``, ``gc``, ``prune``, ``migrate``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

import stashdb
from stashdb.cli.app import (
    Json,
    Store,
    app,
    err,
    lock_timeout,
    open_store,
    out,
    print_json,
    progress,
)
from stashdb.errors import InvalidArguments
from stashdb.model import format_size
from stashdb.render import markup_safe as safe


@app.command()
def verify(
    repair: Annotated[
        bool, typer.Option("--repair", help="Also drop the rows that cannot be read back.")
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Check the whole store: every commit, object and chunk, re-hashing each chunk.

    Exits 0 only when everything is sound; otherwise lists what is missing or
    damaged and which commits and variables it breaks. What it finds damaged,
    the next commit of the same values writes again. With --repair, damaged
    chunks and the objects that need them are dropped as well.

    Example: stashdb verify --repair
    """
    repo = open_store(store)
    with progress("verifying"):
        report = repo.verify(repair=repair)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "refs": report.refs,
                "commits": report.commits,
                "objects": report.objects,
                "chunks": report.chunks,
                "bytes": report.bytes,
                "problems": [
                    {"kind": p.kind, "id": p.id, "detail": p.detail,
                     "affects": [{"commit": c, "name": n} for c, n in p.affects]}
                    for p in report.problems
                ],
                "repaired": None if report.repaired is None else {
                    "chunks": report.repaired.chunks, "objects": report.repaired.objects,
                },
            }
        )
    else:
        # Problems wrap rather than lose the commits and variables they name.
        out.print(safe(report), soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def gc(
    grace: Annotated[
        float, typer.Option(
            metavar="SECONDS", help="Spare objects written in the last SECONDS (commits in flight)."
        )
    ] = 3600.0,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Delete chunks and objects no commit refers to (safe while others commit).

    Example: stashdb gc --grace 0
    """
    freed = open_store(store).gc(grace=grace)
    if as_json:
        print_json({"objects": freed.objects, "chunks": freed.chunks, "bytes": freed.bytes})
    else:
        out.print(f"freed {freed.chunks} chunks ({format_size(freed.bytes)}) and "
                  f"{freed.objects} objects")


#: Prune asks before dropping more commits than this.
_ASK_ABOVE = 10


def _confirm(count: int) -> None:
    if not err.is_terminal or not sys.stdin.isatty():
        raise InvalidArguments(
            f"prune would drop {count} commits: add --yes to do it, or --dry-run to see them"
        )
    if not typer.confirm(f"drop {count} commits?", default=False, err=True):
        raise typer.Exit(1)


@app.command()
def prune(
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", metavar="N", help="Keep the newest N commits.")
    ] = None,
    keep_days: Annotated[
        float | None,
        typer.Option("--keep-days", metavar="D", help="Keep commits younger than D days."),
    ] = None,
    branch: Annotated[
        str | None, typer.Option(metavar="BRANCH", help="Branch to prune (default: current).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be dropped; change nothing.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help=f"Drop more than {_ASK_ABOVE} without asking.")
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Drop old commits of a branch, never a tagged one or a branch head; then gc.

    Dropping more than a few commits is asked about first on a terminal, and
    needs --yes elsewhere; --dry-run shows what would go.

    Example: stashdb prune --keep-last 20 --keep-days 7 --dry-run
    """
    if keep_last is None and keep_days is None:
        raise InvalidArguments("prune needs --keep-last N and/or --keep-days D: what to keep")
    if (keep_last or 0) < 0 or (keep_days or 0) < 0:
        raise InvalidArguments("--keep-last and --keep-days cannot be negative")
    repo = open_store(store)
    report = repo.prune(branch, keep_last=keep_last, keep_days=keep_days, dry_run=True)
    if not dry_run and len(report.commits) > _ASK_ABOVE and not yes:
        _confirm(len(report.commits))
    if not dry_run:
        report = repo.prune(branch, keep_last=keep_last, keep_days=keep_days)
    if as_json:
        print_json(
            {
                "dropped": list(report.commits),
                "objects": report.gc.objects,
                "chunks": report.gc.chunks,
                "bytes": report.gc.bytes,
            }
        )
    else:
        dropped = len(report.commits)
        out.print(
            ("would have dropped " if dry_run else "dropped ")
            + f"{dropped} commit{'' if dropped == 1 else 's'}; "
            + ("freed " if not dry_run else "freeing ")
            + f"{report.gc.chunks} chunks ({format_size(report.gc.bytes)}) and "
            f"{report.gc.objects} objects" + (" (dry run: nothing changed)" if dry_run else "")
        )


@app.command()
def migrate(store: Store = None, as_json: Json = False) -> None:
    """Upgrade the store's schema to the newest revision this stashdb knows.

    Opening a store upgrades it anyway; this does it explicitly and says what it did.

    Example: stashdb migrate --store postgresql+psycopg://me@db/team
    """
    done = stashdb.migrate(store or None, lock_timeout=lock_timeout())
    if as_json:
        print_json({"store": done.location, "before": done.before, "after": done.after})
    else:
        out.print(safe(done), soft_wrap=True)


