"""Shared fixtures: real stores (SQLite files, PostgreSQL schemas) and fresh interpreters.

Backend-facing tests take the `repo` (or `store_url`) fixture and run once per
read path: SQLite read through the standard library's sqlite3 (``sqlite``),
SQLite read through SQLAlchemy (``sqlite-sqlalchemy``, a ``sqlite+pysqlite://``
URL), and PostgreSQL. PostgreSQL runs when STASHDB_TEST_POSTGRES_URL names a
server (CI sets it); without it those cases skip, saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

# Every test process and the processes it starts sign with keys of their own,
# never the user's (~/.config/stashdb): one key directory for the whole run.
os.environ.setdefault(
    "STASHDB_CONFIG_DIR", tempfile.mkdtemp(prefix="stashdb-test-keys-")
)

import stashdb

POSTGRES_ENV = "STASHDB_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "sqlite-sqlalchemy", "postgresql"]


def close_open_repos() -> None:
    stashdb.close_all()


@contextlib.contextmanager
def raw_connection(repo: stashdb.Repo) -> Iterator[Any]:
    """A SQLAlchemy connection of our own to the repo's database, inside a transaction.

    For what a test does behind stashdb's back: damage, rows from elsewhere.
    """
    from sqlalchemy import create_engine

    engine = create_engine(repo.url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def postgres_url() -> str:
    """The PostgreSQL server to test against, or skip the test saying how to get one."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_ENV}, e.g. postgresql+psycopg://root@127.0.0.1/test"
        )
    return url


@contextlib.contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema on the server; yields a URL whose search_path is that schema."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"stashdb_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
    except Exception as exc:  # set but unreachable: a failure, not a skip
        pytest.fail(f"{POSTGRES_ENV} is set but the server cannot be used: {exc}")
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        close_open_repos()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty store, once on each backend and read path."""
    if request.param == "sqlite":
        yield stashdb.init(tmp_path).url
    elif request.param == "sqlite-sqlalchemy":
        yield stashdb.init("sqlite+pysqlite:///" + quote(str(tmp_path / "store.db"))).url
    else:
        with postgres_schema(postgres_url()) as url:
            yield stashdb.init(url).url


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each test runs in its own directory, with no store opened by another test."""
    monkeypatch.chdir(tmp_path)
    yield
    close_open_repos()


@pytest.fixture
def repo(store_url: str) -> stashdb.Repo:
    """A store on each backend (a SQLite one in the test's directory)."""
    return stashdb.init(store_url)


def run_python(code: str, cwd: Path, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as ``__main__`` of a fresh interpreter, as a user's script would be."""
    script = cwd / f"script_{abs(hash(code))}.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"script failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def last_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a script printed on its last line of stdout."""
    return json.loads(result.stdout.strip().splitlines()[-1])


def shell_session(tmp_path: Path, cells: list[str], report: str) -> Any:
    """Run ``cells`` in a fresh InteractiveShell in ``tmp_path``; return ``report``'s JSON."""
    code = f"""
        import json, sys
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        ns = shell.user_ns
        failed = []
        for cell in {cells!r}:
            if not shell.run_cell(cell, store_history=True).success:
                failed.append(cell)
        print(json.dumps({report}))
    """
    return last_json(run_python(code, tmp_path))
