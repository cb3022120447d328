"""The ``stashdb`` command line: parse, call the library, render.

No storage logic lives here. Every error a user can cause is a `StashError`
(or an OS error naming a file); `_App.invoke` turns it into one line on stderr
and exit status 1. ``--debug`` anywhere on the command line shows the
traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

import stashdb
from stashdb import render
from stashdb.errors import StashError
from stashdb.model import format_size
from stashdb.repo import Repo

__all__ = ["app", "main"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class _App(TyperGroup):
    """Turns user errors into one line on stderr and exit status 1."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # --debug is accepted anywhere, so `stashdb log --debug` works too.
        if "--debug" in args:
            ctx.meta["stashdb.debug"] = True
            args = [a for a in args if a != "--debug"]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (StashError, OSError) as exc:
            if ctx.meta.get("stashdb.debug"):
                raise
            message = " ".join(str(exc).split())  # one line, whatever the message held
            err.print(f"[red]stashdb: error:[/red] {message}", soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("stashdb: interrupted")
            raise typer.Exit(130) from None


app = typer.Typer(
    name="stashdb",
    cls=_App,
    help="Version control for the live state of Python programs.\n\n"
    "Example: stashdb commit -m 'first run' train.py",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Store = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="STASHDB_URL",
        help="Store to use: a directory, a .db file or a database URL "
        "(default: the .stashdb/ found from here upwards).",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for programs instead of tables.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stashdb {stashdb.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (accepted after any command too).")
    ] = False,
) -> None:
    """Version control for the live state of Python programs.

    Example: stashdb commit -m 'first run' train.py
    """


def _open(store: str | None, *, create: bool = False) -> Repo:
    # An empty --store or STASHDB_URL means "not given".
    return stashdb.open(store or None, create=create)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _split_names(values: list[str] | None) -> list[str] | None:
    """``--only df --only a,b`` -> ``["df", "a", "b"]``."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on a terminal; nothing when output is not one."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=err, transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


# -- commands ---------------------------------------------------------------------


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
        raise StashError("give a script to run (stashdb commit SCRIPT.py) or --from FILE, not both")
    from stashdb.scripts import load_script, running_script

    # A missing or broken script fails before any store is made.
    code = load_script(script) if script is not None else None
    repo = _open(store, create=True)

    def commit_namespace(text: str, namespace: dict[str, Any]) -> stashdb.Commit:
        with _progress("committing") as progress:
            return repo.commit(
                text,
                namespace=namespace,
                branch=branch,
                only=_split_names(only),
                exclude=_split_names(exclude),
                progress=progress,
            )

    if source is not None:
        from stashdb.dillfiles import main_module, read_session

        with main_module(read_session(source)) as module:
            made = commit_namespace(message or f"imported {Path(source).name}", module.__dict__)
        _report_commit(made, as_json)
        return

    assert script is not None and code is not None
    # With --json, stdout carries only the JSON: the script prints to stderr.
    script_output = contextlib.redirect_stdout(sys.stderr) if as_json else nullcontext()
    with script_output, running_script(script, list(args or []), code) as run:
        text = message or f"run {Path(script).name}"
        if run.failure is not None:
            text = f"{text} [failed: {run.failure}]"
        made = commit_namespace(text, run.namespace)
    if run.traceback:
        sys.stderr.write(run.traceback)
    _report_commit(made, as_json)
    if run.exit_code:
        raise typer.Exit(run.exit_code)


def _report_commit(made: stashdb.Commit, as_json: bool) -> None:
    if as_json:
        _print_json(render.commit_json(made, entries=True))
        return
    out.print(
        f"\\[[bold]{escape(made.branch)}[/bold] [yellow]{made.short_id}[/yellow]] "
        f"{escape(made.message)}"
    )
    out.print(
        f"stored {len(made.stored)}, reused {len(made.reused)}, skipped {len(made.skipped)}; "
        f"{format_size(made.bytes_written)} written"
    )
    for skipped in made.skipped:
        out.print(
            f"  [red]skipped[/red] {escape(skipped.name)} ({escape(skipped.type_name)}): "
            f"{escape(skipped.reason)}",
            overflow="ellipsis",
            no_wrap=True,
        )


@app.command()
def log(
    n: Annotated[
        int | None, typer.Option("-n", min=0, help="Show at most N commits.")
    ] = None,
    branch: Annotated[
        str | None, typer.Option(help="Branch to show (default: current).")
    ] = None,
    all_refs: Annotated[
        bool, typer.Option("--all", help="Commits of every branch and tag.")
    ] = False,
    graph: Annotated[bool, typer.Option("--graph", help="Draw the branch graph.")] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show commits, newest first, with the names each added (+), changed (~) and removed (-).

    Example: stashdb log -n 10 --all --graph
    """
    repo = _open(store)
    commits = repo.log(branch=branch, limit=n, all=all_refs)
    counts = repo.store.change_counts(commits)
    if as_json:
        _print_json([render.commit_json(c, counts.get(c.id)) for c in commits])
        return
    if not commits:
        out.print("no commits yet")
        return
    tips: dict[str, list[str]] = {}
    for ref in repo.branches():
        tips.setdefault(ref.commit_id, []).append(ref.name)
    out.print(render.log_table(commits, counts, tips, graph=graph))


@app.command()
def show(
    rev: Annotated[str, typer.Argument(help="Commit to show.")] = "HEAD",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show one commit: who, when, and every name with its type, size, status and preview.

    Example: stashdb show HEAD~1
    """
    made = _open(store).show(rev)
    if as_json:
        _print_json(render.commit_json(made, entries=True))
        return
    tags = f"  tags: {', '.join(made.tags)}" if made.tags else ""
    out.print(f"commit [yellow]{made.id}[/yellow]  ({escape(made.branch)}){escape(tags)}")
    when = f"{made.time.astimezone():%Y-%m-%d %H:%M:%S %z}"
    out.print(f"date   {when}   by {escape(made.user)}@{escape(made.host)}")
    out.print(f"python {made.python}, dill {made.dill}")
    out.print(f"\n    {escape(made.message or '(no message)')}\n")
    out.print(render.entries_table(made.entries))


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="Older commit.")],
    b: Annotated[str, typer.Argument(help="Newer commit.")] = "HEAD",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show the names added (+), removed (-) and changed (~) from A to B.

    Example: stashdb diff cleaned HEAD
    """
    changes = _open(store).diff(a, b)
    if as_json:
        _print_json(render.diff_json(changes))
        return
    out.print(f"diff [yellow]{changes.a.short_id}[/yellow] → [yellow]{changes.b.short_id}[/yellow]")
    if not changes:
        out.print("no differences")
        return
    out.print(render.diff_table(changes))


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="Variable name.")],
    branch: Annotated[
        str | None, typer.Option(help="Branch to follow (default: current).")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show the versions of one variable: where it was added, changed and removed.

    Example: stashdb history threshold
    """
    versions = _open(store).history(name, branch=branch)
    if as_json:
        _print_json([render.version_json(v) for v in versions])
        return
    if not versions:
        out.print(f"{escape(repr(name))} is in no commit of this branch")
        return
    out.print(render.history_table(versions))


def _refs_command(kind: str, name: str | None, rev: str, delete: str | None,
                  message: str | None, store: str | None, as_json: bool) -> None:
    repo = _open(store)
    if delete is not None:
        removed = repo.delete_tag(delete) if kind == "tag" else repo.delete_branch(delete)
        out.print(f"deleted {kind} {escape(removed.name)} (was {removed.commit_id[:8]})")
        return
    if name is None:
        refs = repo.tags() if kind == "tag" else repo.branches()
        head = repo.head if kind == "branch" else None
        if as_json:
            _print_json([render.ref_json(r, head) for r in refs])
        elif refs:
            out.print(render.refs_table(refs, head))
        else:
            out.print(f"no {kind}s")
        return
    made = repo.tag(name, rev, message=message) if kind == "tag" else repo.branch(name, rev)
    if as_json:
        _print_json(render.ref_json(made))
    else:
        out.print(f"{kind} {escape(made.name)} → {made.commit_id[:8]}")


@app.command()
def tag(
    name: Annotated[str | None, typer.Argument(help="Tag to create.")] = None,
    rev: Annotated[str, typer.Argument(help="Commit to tag.")] = "HEAD",
    delete: Annotated[
        str | None, typer.Option("-d", "--delete", help="Delete this tag.")
    ] = None,
    message: Annotated[
        str | None, typer.Option("-m", "--message", help="Tag message.")
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
        str | None, typer.Argument(help="Branch to create.")
    ] = None,
    rev: Annotated[str, typer.Argument(help="Where it starts.")] = "HEAD",
    delete: Annotated[
        str | None, typer.Option("-d", "--delete", help="Delete this branch.")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """List branches (* marks the current one), start one at REV, or delete one with -d.

    Example: stashdb branch experiment HEAD~1
    """
    _refs_command("branch", name, rev, delete, None, store, as_json)


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
        raise StashError("choose --shell or --to FILE, not both")
    from stashdb.dillfiles import main_module, write_module

    repo = _open(store)
    with main_module() as module, _progress("restoring") as progress:
        report = repo.checkout(
            rev, only=_split_names(only), namespace=module.__dict__, merge=True, progress=progress
        )
        if to is not None:
            write_module(to, module)
    if as_json:
        _print_json(render.checkout_json(report) | {"file": str(to) if to else None})
    else:
        err.print(
            f"restored {len(report.restored)} names from [yellow]{report.commit.short_id}[/yellow]"
            + (f" into {escape(str(to))}" if to is not None else "")
        )
        for skipped in report.skipped:
            err.print(
                f"  [red]skipped at commit[/red] {escape(skipped.name)}: {escape(skipped.reason)}"
            )
        for failed in report.failed:
            err.print(f"  [red]failed[/red] {escape(failed.name)}: {escape(failed.reason)}")
        for warning in report.warnings:
            err.print(f"  [yellow]warning[/yellow] {escape(warning)}")
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
    err.print(escape(banner))
    IPython.start_ipython(argv=["--no-confirm-exit", "--no-banner"], user_ns=namespace)


@app.command()
def status(store: Store = None, as_json: Json = False) -> None:
    """Show the store, the current branch and HEAD, counts and sizes.

    Example: stashdb status
    """
    repo = _open(store)
    stats = repo.store.stats()
    head_branch = repo.head
    try:
        head: stashdb.Commit | None = repo.show("HEAD")
    except stashdb.RevisionNotFound:
        head = None
    if as_json:
        _print_json(
            {
                "store": repo.location,
                "branch": head_branch,
                "head": render.commit_json(head) if head else None,
                "names": len(head.entries) if head else 0,
                **render.stats_json(stats),
            }
        )
        return
    out.print(f"store    {escape(repo.location)}", overflow="ellipsis", no_wrap=True)
    if head is None:
        out.print(f"branch   {escape(head_branch)} (no commits yet)")
    else:
        out.print(
            f"branch   {escape(head_branch)} at [yellow]{head.short_id}[/yellow] "
            f"{escape(head.message)}",
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


@app.command()
def du(
    rev: Annotated[str, typer.Argument(help="Snapshot to measure.")] = "HEAD",
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Show storage by variable in a snapshot, and the store's total and deduplication ratio.

    Example: stashdb du HEAD
    """
    repo = _open(store)
    snapshot = repo.show(rev)
    stats = repo.store.stats()
    # Names sharing one stored object (a group) are one row: the bytes are there once.
    rows: dict[str, tuple[list[str], str, int, int]] = {}
    for e in snapshot.entries:
        if e.object_id is None:
            continue
        names, type_name, size, stored = rows.get(e.object_id, ([], e.type_name, e.size,
                                                                e.stored_size))
        rows[e.object_id] = ([*names, e.name], type_name, size, stored)
    ordered = sorted(rows.values(), key=lambda r: r[3], reverse=True)
    total_size = sum(r[2] for r in ordered)
    total_stored = sum(r[3] for r in ordered)
    if as_json:
        _print_json(
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


@app.command()
def verify(store: Store = None, as_json: Json = False) -> None:
    """Check the whole store: every commit, object and chunk, re-hashing each chunk.

    Exits 0 only when everything is sound; otherwise lists what is missing or
    damaged and which commits and variables it breaks.

    Example: stashdb verify
    """
    repo = _open(store)
    with _progress("verifying"):
        report = repo.verify()
    if as_json:
        _print_json(
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
            }
        )
    else:
        # Problems wrap rather than lose the commits and variables they name.
        out.print(escape(str(report)), soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def gc(
    grace: Annotated[
        float, typer.Option(help="Spare objects written in the last SECONDS (commits in flight).")
    ] = 3600.0,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Delete chunks and objects no commit refers to (safe while others commit).

    Example: stashdb gc --grace 0
    """
    freed = _open(store).gc(grace=grace)
    if as_json:
        _print_json({"objects": freed.objects, "chunks": freed.chunks, "bytes": freed.bytes})
    else:
        out.print(f"freed {freed.chunks} chunks ({format_size(freed.bytes)}) and "
                  f"{freed.objects} objects")


@app.command()
def prune(
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", help="Keep the newest N commits.")
    ] = None,
    keep_days: Annotated[
        float | None, typer.Option("--keep-days", help="Keep commits younger than D days.")
    ] = None,
    branch: Annotated[
        str | None, typer.Option(help="Branch to prune (default: current).")
    ] = None,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Drop old commits of a branch, never a tagged one or a branch head; then gc.

    Example: stashdb prune --keep-last 20 --keep-days 7
    """
    report = _open(store).prune(branch, keep_last=keep_last, keep_days=keep_days)
    if as_json:
        _print_json(
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
            f"dropped {dropped} commit{'' if dropped == 1 else 's'}; freed {report.gc.chunks} "
            f"chunks ({format_size(report.gc.bytes)}) and {report.gc.objects} objects"
        )


@app.command()
def migrate(store: Store = None, as_json: Json = False) -> None:
    """Upgrade the store's schema to the newest revision this stashdb knows.

    Opening a store upgrades it anyway; this does it explicitly and says what it did.

    Example: stashdb migrate --store postgresql+psycopg://me@db/team
    """
    done = stashdb.migrate(store or None)
    if as_json:
        _print_json({"store": done.location, "before": done.before, "after": done.after})
    else:
        out.print(escape(str(done)), soft_wrap=True)


def main() -> None:
    """Entry point of the ``stashdb`` console script."""
    app(prog_name="stashdb")
