"""Commands that read history without unpickling anything: ``log``, ``show``, ``diff``,
``history``, ``status``, ``du``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import stashdb
from stashdb import render
from stashdb.cli.app import Json, Store, Trust, app, open_store, out, print_json
from stashdb.errors import InvalidArguments
from stashdb.model import format_size, stored_objects
from stashdb.render import markup_safe as safe


@app.command()
def log(
    revs: Annotated[
        str | None,
        typer.Argument(metavar="[REVS]", show_default=False,
                       help="A..B: what B has that A has not (v1..: since v1); or one REV."),
    ] = None,
    n: Annotated[
        int | None, typer.Option("-n", min=0, metavar="N", help="Show at most N commits.")
    ] = None,
    branch: Annotated[
        str | None, typer.Option(metavar="BRANCH", help="Branch to show (default: current).")
    ] = None,
    all_refs: Annotated[
        bool, typer.Option("--all", help="Commits of every branch and tag.")
    ] = False,
    graph: Annotated[bool, typer.Option("--graph", help="Draw the branch graph.")] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show commits, newest first, with the names each added (+), changed (~) and removed (-).

    Example: stashdb log cleaned..HEAD -n 10
    """
    if revs is not None and store is None and _names_a_store(revs):
        store, revs = revs, None  # `stashdb log analysis.db`: that store's history
    repo = open_store(store)
    commits = repo.log(revs, branch=branch, limit=n, all=all_refs)
    counts = repo.change_counts(commits)
    signers = repo.signers(commits)
    if as_json:
        print_json([render.commit_json(c, counts.get(c.id), signer=signers[c.id])
                    for c in commits])
        return
    if not commits:
        if n != 0 and revs is not None:
            out.print(f"no commits in {safe(revs)}")
        elif n != 0:
            out.print(safe(_no_commits_here(repo, branch, all_refs)))
        return
    tips: dict[str, list[str]] = {}
    for ref in [*repo.branches(), *repo.remote_refs()]:
        tips.setdefault(ref.commit_id, []).append(ref.name)
    out.print(render.log_table(commits, counts, tips, graph=graph, signers=signers))


def _names_a_store(text: str) -> bool:
    """Whether ``text`` is a path to a store (a file, or a directory with .stashdb/)."""
    from pathlib import Path

    path = Path(text)
    return path.is_file() or (path / ".stashdb").is_dir()


def _no_commits_here(repo: stashdb.Repo, branch: str | None, all_refs: bool) -> str:
    """Why ``log`` shows nothing, and where the commits are if there are any elsewhere."""
    if all_refs:
        return "no commits yet"
    others = [b.name for b in repo.branches() if b.name != (branch or repo.head)]
    if not others:
        return "no commits yet"
    listed = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
    return (f"no commits on branch {branch or repo.head}; other branches have some: {listed} "
            "(stashdb log --all, or --branch NAME)")


@app.command()
def show(
    rev: Annotated[
        str, typer.Argument(metavar="REV", help="Commit to show (REV:NAME: one variable).")
    ] = "HEAD",
    to: Annotated[
        Path | None,
        typer.Option("--to", metavar="FILE",
                     help="With REV:NAME: write the value to FILE, for pickle.load(FILE)."),
    ] = None,
    trust: Trust = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show one commit: who, when, and every name with its type, size, status and preview.

    REV:NAME shows one variable in full; with --to FILE its value is written as a
    plain pickle (nothing is unpickled to do it).

    Example: stashdb show HEAD~1:df --to df.pkl
    """
    if ":" in rev:
        commit_rev, name = rev.split(":", 1)  # a rev never holds ':'; a name may
        _show_one(open_store(store), commit_rev, name, to, as_json, trust)
        return
    if to is not None:
        raise InvalidArguments("--to writes one value: give REV:NAME")
    repo = open_store(store)
    made = repo.show(rev)
    signer = repo.signers([made])[made.id]
    if as_json:
        print_json(render.commit_json(made, entries=True, signer=signer))
        return
    out.print(render.commit_header(made, signer))
    out.print(render.entries_table(made.entries))


def _show_one(
    repo: stashdb.Repo, rev: str, name: str, to: Path | None, as_json: bool, trust: bool
) -> None:
    commit = repo.show(rev or "HEAD")
    entry = next((e for e in commit.entries if e.name == name), None)
    if entry is None:
        raise stashdb.NameNotInSnapshot([name], commit.id, commit.names)
    if to is not None:
        repo.write_value(commit, name, to, trust=trust)
    if as_json:
        file = str(to) if to else None
        print_json(render.entry_json(entry) | {"commit": commit.id, "file": file})
        return
    out.print(render.entry_detail(entry, commit))
    if to is not None:
        out.print(f"wrote {safe(name)} to {safe(to)} (pickle.load reads it)")


@app.command()
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="Older commit.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Newer commit.")] = "HEAD",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show the names added (+), removed (-) and changed (~) from A to B.

    Example: stashdb diff cleaned HEAD
    """
    changes = open_store(store).diff(a, b)
    if as_json:
        print_json(render.diff_json(changes))
        return
    out.print(f"diff [yellow]{changes.a.short_id}[/yellow] → [yellow]{changes.b.short_id}[/yellow]")
    if not changes:
        out.print("no differences")
        return
    out.print(render.diff_table(changes))


@app.command()
def history(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Variable name.")],
    branch: Annotated[
        str | None, typer.Option(metavar="BRANCH", help="Branch to follow (default: current).")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show the versions of one variable: where it was added, changed and removed.

    Example: stashdb history threshold
    """
    versions = open_store(store).history(name, branch=branch)
    if as_json:
        print_json([render.version_json(v) for v in versions])
        return
    if not versions:
        out.print(f"{safe(repr(name))} is in no commit of this branch")
        return
    out.print(render.history_table(versions))


@app.command()
def status(store: Store = None, as_json: Json = False) -> None:
    """Show the store, the current branch and HEAD, counts and sizes.

    Example: stashdb status
    """
    repo = open_store(store)
    stats = repo.stats()
    head_branch = repo.head
    costs = repo.snapshot_costs()
    try:
        head: stashdb.Commit | None = repo.show("HEAD")
    except stashdb.RevisionNotFound:
        head = None
    if as_json:
        print_json(
            {
                "store": repo.location,
                "branch": head_branch,
                "head": render.commit_json(head) if head else None,
                "names": len(head.entries) if head else 0,
                **render.stats_json(stats),
                "last_snapshots": [c.as_dict() for c in costs],
            }
        )
        return
    out.print(f"store    {safe(repo.location)}", overflow="ellipsis", no_wrap=True)
    if head is None:
        out.print(f"branch   {safe(head_branch)} (no commits yet)")
    else:
        out.print(
            f"branch   {safe(head_branch)} at [yellow]{head.short_id}[/yellow] "
            f"{safe(head.message)}",
            overflow="ellipsis",
            no_wrap=True,
        )
        out.print(f"names    {len(head.entries)} in HEAD ({len(head.skipped)} skipped)")
    out.print(f"commits  {stats.commits}, branches {stats.branches}, tags {stats.tags}")
    out.print(
        f"stored   {format_size(stats.stored_bytes)} in {stats.chunks} chunks "
        f"({format_size(stats.raw_bytes)} uncompressed)"
    )
    out.print(
        f"dedup    all snapshots hold {format_size(stats.logical_bytes)}: "
        f"{stats.dedup_ratio:.1f}× what is stored"
    )
    if costs:  # the newest automatic snapshot of any branch (IPython's, after each cell)
        out.print(f"auto     last snapshot on {safe(costs[0].branch)}")
        for line in render.snapshot_cost_lines(costs[0]):
            out.print(f"  {safe(line)}")


@app.command()
def du(
    rev: Annotated[str, typer.Argument(metavar="REV", help="Snapshot to measure.")] = "HEAD",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show storage by variable in a snapshot, and the store's total and deduplication ratio.

    Example: stashdb du HEAD
    """
    repo = open_store(store)
    snapshot = repo.show(rev)
    stats = repo.stats()
    ordered = stored_objects(snapshot.entries)
    total_size = sum(r[2] for r in ordered)
    total_stored = sum(r[3] for r in ordered)
    if as_json:
        print_json(
            {
                "commit": snapshot.id,
                "objects": [
                    {"names": names, "type": t, "size": s, "stored_size": st}
                    for names, t, s, st in ordered
                ],
                "size": total_size,
                "stored_size": total_stored,
                "store": render.stats_json(stats),
            }
        )
        return
    out.print(render.du_table([(", ".join(n), t, s, st) for n, t, s, st in ordered]))
    out.print(
        f"\nsnapshot {snapshot.short_id}: {format_size(total_size)} pickled, "
        f"{format_size(total_stored)} stored"
    )
    out.print(
        f"store: {format_size(stats.stored_bytes)} for {format_size(stats.logical_bytes)} "
        f"in {stats.commits} snapshots; dedup ratio {stats.dedup_ratio:.1f}×"
    )


