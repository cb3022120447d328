"""``stashdb ui``: serve the read-only history viewer on this machine until Ctrl-C."""

from __future__ import annotations

from typing import Annotated

import typer

from stashdb.cli.app import Store, app, open_store
from stashdb.viewer.launch import LOOPBACK, exposed_warning, serve


@app.command()
def ui(
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="N", help="Port to serve on (0: a free one).")
    ] = 0,
    host: Annotated[
        str, typer.Option(metavar="HOST",
                          help="Address to listen on. Only this machine by default; "
                               "another address lets others in who have the token.")
    ] = "127.0.0.1",
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the URL; do not open a browser.")
    ] = False,
    until_stdin_closes: Annotated[
        bool, typer.Option("--until-stdin-closes", hidden=True)  # stashdb.ui()'s child
    ] = False,
    store: Store = None,
) -> None:
    """Browse the history in a web browser: commits, diffs, variables, what takes the space.

    Read-only and local: it listens on 127.0.0.1 and every URL needs the random
    token it prints. Nothing is unpickled. Needs the ui extra (pip install 'stashdb[ui]').

    Example: stashdb ui --port 8765
    """
    repo = open_store(store)
    if host not in LOOPBACK:
        typer.echo(f"warning: {exposed_warning(host)}", err=True)

    def announce(url: str) -> None:
        typer.echo(f"stashdb ui: the history of {repo.location}, at")
        typer.echo(url)
        typer.echo("(Ctrl-C stops it)", err=True)

    serve(repo, host=host, port=port, open_browser=not no_browser, announce=announce,
          until_stdin_closes=until_stdin_closes)
