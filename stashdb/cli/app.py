"""The ``stashdb`` command line: the app, its shared options, and how errors end.

No storage logic lives here or in the command modules: each command parses,
calls the library, and renders with `stashdb.render`. Every error a user can
cause is a `StashError` (or an OS error naming a file); `_App.invoke` turns it
into one line on stderr and exit status 1. ``--debug`` anywhere on the command
line shows the traceback instead; ``--lock-timeout`` anywhere sets how long a
write waits for another process's lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup

import stashdb
from stashdb.errors import StashError
from stashdb.render import printable
from stashdb.repo import Repo

__all__ = [
    "Json", "Store", "app", "err", "main", "open_store", "out", "print_json", "progress",
    "split_names",
]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

#: Options accepted anywhere on the command line (moved in front of the command).
_ANYWHERE = ("--debug", "--lock-timeout")


class _PlainArgument(TyperArgument):
    """An argument shown as git shows one: ``REV`` and ``[REV]``, not ``{rev}`` and ``<str>``."""

    def _usage_display_name(self) -> str:
        name = self.metavar or self.name or ""
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _App(TyperGroup):
    """Turns user errors into one line on stderr and exit status 1."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in getattr(command, "params", ()):
            if type(param) is TyperArgument:
                param.__class__ = _PlainArgument  # the same argument, shown plainly
        return command

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # --debug and --lock-timeout are accepted anywhere (`stashdb log --debug`).
        return super().parse_args(ctx, _hoist(args))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (StashError, OSError) as exc:
            if ctx.meta.get("stashdb.debug"):
                raise
            # One line, whatever the message held; stored names in it stay inert.
            message = escape(printable(_in_cli_terms(" ".join(str(exc).split()))))
            err.print(f"[red]stashdb: error:[/red] {message}", soft_wrap=True, markup=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("stashdb: interrupted")
            raise typer.Exit(130) from None


#: The library's words for what the CLI spells as flags and commands.
_CLI_TERMS = {
    "trust=True": "--trust",
    "safe=True": "--safe",
    "Repo.sign_all()": "`stashdb keys sign --all`",
    "force the push": "push with --force",
    "copy all data while you can": "run `stashdb fetch --all-data` while you can",
    "fetch and pull its commits first": "run `stashdb pull` first",
    "fetch and pull, then push again": "run `stashdb pull`, then push again",
}


def _in_cli_terms(message: str) -> str:
    for library, cli in _CLI_TERMS.items():
        message = message.replace(library, cli)
    return message


def _hoist(args: list[str]) -> list[str]:
    """``args`` with the options of `_ANYWHERE` (and their values) moved to the front."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg == "--debug" or arg.startswith("--lock-timeout="):
            front.append(arg)
        elif arg == "--lock-timeout" and i + 1 < len(args):
            front += [arg, args[i + 1]]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest

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
        metavar="PATH_OR_URL",
        envvar="STASHDB_URL",
        help="Store to use: a directory, a .db file or a database URL "
        "(default: the .stashdb/ found from here upwards).",
        show_default=False,
    ),
]
Trust = Annotated[
    bool,
    typer.Option("--trust", help="Unpickle even if the commit is not signed by a key you trust."),
]
Safe = Annotated[
    bool,
    typer.Option("--safe", help="Load only plain data, numpy and pandas (an allow-list): "
                                "safe for a store you do not trust."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for programs instead of tables.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"stashdb {stashdb.__version__}")
        raise typer.Exit()


#: What the root options said, for the command being run (one per invocation).
_lock_timeout: list[float | None] = [None]


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks (accepted after any command too).")
    ] = False,
    lock_timeout: Annotated[
        float | None,
        typer.Option(
            "--lock-timeout", min=0, metavar="SECONDS",
            help="How long a write waits while another process holds the store's lock "
            "(default 300; accepted after any command too).",
        ),
    ] = None,
) -> None:
    """Version control for the live state of Python programs.

    Example: stashdb commit -m 'first run' train.py
    """
    ctx.meta["stashdb.debug"] = debug
    _lock_timeout[0] = lock_timeout


def open_store(store: str | None, *, create: bool = False) -> Repo:
    """The store named by ``--store`` / ``STASHDB_URL`` (empty: not given), with the lock wait."""
    return stashdb.open(store or None, create=create, lock_timeout=lock_timeout())


def lock_timeout() -> float | None:
    """What ``--lock-timeout`` said for this command (None: the default)."""
    return _lock_timeout[0]


def print_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, default=str))


def split_names(values: list[str] | None) -> list[str] | None:
    """``--only df --only a,b`` -> ``["df", "a", "b"]``."""
    if not values:
        return None
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


class _Bar:
    """A progress bar in bytes on stderr that appears with its first update."""

    def __init__(self, description: str) -> None:
        self._description = description
        self._progress: Any = None
        self._task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self._progress is None:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), console=err, transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=None)
        self._progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        """Take the bar off the terminal (it may appear again with the next update)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def progress(description: str, *, lazy: bool = False) -> Iterator[Any]:
    """A progress bar in bytes on a terminal; None when output is not one.

    With ``lazy``, the bar shows only once there is progress to show (a script
    runs first, and prints what it prints).
    """
    if not err.is_terminal:
        yield None
        return
    bar = _Bar(description)
    if not lazy:
        bar(0, 0)
    try:
        yield bar
    finally:
        bar.close()


def main() -> None:
    """Entry point of the ``stashdb`` console script."""
    app(prog_name="stashdb")
