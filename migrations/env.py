"""Alembic environment for stashdb stores.

stashdb runs the migrations itself (``stashdb.storage.engine.upgrade``), handing over
an open connection. Developers can also run ``alembic`` with ``-x url=…``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from stashdb.storage.schema import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the store's URL: alembic -x url=sqlite:///path/to/stash.db …")
    with create_engine(url).connect() as conn:
        _migrate(conn)
        conn.commit()


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    # render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
