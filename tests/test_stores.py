"""Finding, creating and opening stores; clear errors for anything that is not one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

import stashdb
from conftest import raw_connection, run_python
from stashdb.storage.format import FORMAT_VERSION


def test_init_creates_a_sqlite_store_and_is_idempotent(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "project")
    assert (tmp_path / "project" / ".stashdb" / "stash.db").is_file()
    again = stashdb.init(tmp_path / "project")
    assert again.location == repo.location
    with sqlite3.connect(tmp_path / "project" / ".stashdb" / "stash.db") as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 16384  # docs/format.md
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0005"
    repo.commit(namespace={"a": 1})
    # The rollback journal is kept between transactions (its header zeroed), not deleted.
    journal = tmp_path / "project" / ".stashdb" / "stash.db-journal"
    assert journal.is_file() and journal.read_bytes()[:28].strip(b"\0") == b""


def test_the_store_is_found_by_walking_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stashdb.init(tmp_path)
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    stashdb.commit("from below", namespace={"x": 1})
    assert not (deep / ".stashdb").exists()
    assert [c.message for c in stashdb.log(repo=tmp_path)] == ["from below"]


def test_reading_without_a_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(stashdb.StoreNotFound, match=r"stashdb\.init"):
        stashdb.log()
    with pytest.raises(stashdb.StoreNotFound):
        stashdb.checkout(namespace={})


def test_repo_accepts_a_directory_a_store_dir_a_file_a_url_or_a_repo(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "p")
    stashdb.commit("x", namespace={"x": 1}, repo=repo)
    db = tmp_path / "p" / ".stashdb" / "stash.db"
    for form in (tmp_path / "p", str(tmp_path / "p" / ".stashdb"), str(db), f"sqlite:///{db}"):
        assert stashdb.show(repo=form).message == "x"


def test_commit_creates_a_store_in_a_new_directory(tmp_path: Path) -> None:
    stashdb.commit(namespace={"x": 1}, repo=tmp_path / "fresh")
    assert (tmp_path / "fresh" / ".stashdb" / "stash.db").is_file()


def test_files_that_are_not_stores(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello " * 1000)
    other_db = tmp_path / "other.db"
    with sqlite3.connect(other_db) as db:
        db.execute("CREATE TABLE people (name TEXT)")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    for path, why in [
        (text_file, "not a database"),
        (other_db, "no stashdb 'meta' table"),
        (empty_dir, "has no .stashdb"),
        (tmp_path / "missing", "no such file"),
    ]:
        with pytest.raises(stashdb.NotAStore, match=why):
            stashdb.log(repo=path)


def test_a_truncated_store_is_not_a_traceback(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "p")
    repo.commit(namespace={"x": list(range(100_000))})
    repo.close()
    stashdb.close_all()
    db = tmp_path / "p" / ".stashdb" / "stash.db"
    db.write_bytes(db.read_bytes()[:1000])
    with pytest.raises(stashdb.NotAStore):
        stashdb.log(repo=tmp_path / "p")


def test_a_store_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "p")
    with raw_connection(repo) as conn:
        conn.execute(text("UPDATE meta SET value = '99' WHERE key = 'format_version'"))
    repo.close()
    stashdb.close_all()
    with pytest.raises(stashdb.UnsupportedFormat, match="upgrade stashdb") as info:
        stashdb.log(repo=tmp_path / "p")
    assert (info.value.found, info.value.supported) == (99, FORMAT_VERSION)


def test_import_stashdb_is_light(tmp_path: Path) -> None:
    result = run_python(
        """
        import sys
        import stashdb
        heavy = ("sqlalchemy", "dill", "alembic", "numpy", "zstandard", "IPython")
        heavy = [m for m in heavy if m in sys.modules]
        print(heavy)
        """,
        tmp_path,
    )
    assert result.stdout.strip() == "[]"


def test_restoring_one_small_variable_does_not_import_dill(tmp_path: Path) -> None:
    run_python("import stashdb\nsmall = {'a': 1}\nsquare = lambda v: v * v\nstashdb.commit()\n", tmp_path)
    result = run_python(
        """
        import sys, stashdb
        stashdb.checkout(only=["small"])
        print("dill" in sys.modules, "alembic" in sys.modules)
        """,
        tmp_path,
    )
    assert result.stdout.strip() == "False False"


def test_reading_a_sqlite_store_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    # Its import is most of the cost of restoring one variable in a fresh
    # process (docs/performance.md): SQLite stores are read with sqlite3.
    run_python(
        "import stashdb\nsmall = {'a': 1}\nother = [1, 2]\nstashdb.commit('one')\n"
        "other.append(3)\nstashdb.commit('two')\nstashdb.tag('first', 'HEAD~1')\n",
        tmp_path,
    )
    result = run_python(
        """
        import sys, stashdb
        stashdb.checkout("first", only=["other"])
        old = stashdb.at("HEAD~1")["other"]
        print(other, old, stashdb.show().message, "sqlalchemy" in sys.modules)
        stashdb.commit("three")  # writing makes the engine
        print("sqlalchemy" in sys.modules)
        """,
        tmp_path,
    )
    assert result.stdout.split("\n")[:2] == ["[1, 2] [1, 2] two False", "True"]


def test_both_read_drivers_read_the_same_store_alike(tmp_path: Path) -> None:
    # The same SQLite file through the sqlite3 driver and through SQLAlchemy:
    # one set of queries, so every answer must be equal.
    from stashdb.storage.engine import open_database
    from stashdb.storage.engine_driver import EngineDriver
    from stashdb.storage.reader import Reader
    from stashdb.storage.sqlite_driver import SQLiteDriver

    repo = stashdb.init(tmp_path)
    shared = [1, 2]
    repo.commit("one", namespace={"a": shared, "b": shared, "gen": (i for i in "x"), "n": 1})
    second = repo.commit("two", namespace={"a": [3], "n": 2})
    repo.tag("v1", "HEAD~1")
    path = tmp_path / ".stashdb" / "stash.db"
    light_driver = SQLiteDriver.open(path, lock_timeout=5)
    assert light_driver is not None
    database = open_database(repo.url, create=False)
    light, engine = Reader(light_driver), Reader(EngineDriver(database))
    try:
        for rev in ("HEAD", "HEAD~1", "v1", second.id[:6], "main^"):
            assert light.resolve(rev) == engine.resolve(rev)
            assert light.show(rev) == engine.show(rev)
        assert light.list_refs() == engine.list_refs() and light.head() == engine.head()
        assert light.log(all=True) == engine.log(all=True)
        assert light.history("a") == engine.history("a") and light.stats() == engine.stats()
        assert light.diff("v1", "HEAD") == engine.diff("v1", "HEAD")
        with pytest.raises(stashdb.RevisionNotFound):
            light.resolve("nope")
        ids = [bytes.fromhex(e.object_id) for e in second.entries if e.object_id]
        assert light.read_many(ids) == engine.read_many(ids)
    finally:
        light.close()
        database.dispose()


def test_a_store_at_an_older_revision_opens_through_the_engine_and_is_upgraded(
    tmp_path: Path,
) -> None:
    import shutil

    from stashdb.storage.sqlite_driver import SQLiteDriver

    db = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "data" / "store-rev1.db", db)
    assert SQLiteDriver.open(db, lock_timeout=5) is None  # not at the newest revision
    repo = stashdb.open(db)
    assert repo.log()  # opened (and upgraded) through the engine
    assert SQLiteDriver.open(db, lock_timeout=5) is not None


def test_a_repo_in_a_namespace_is_stored_as_its_location(repo: stashdb.Repo) -> None:
    repo.commit(namespace={"store": repo})
    ns: dict[str, object] = {}
    repo.checkout(namespace=ns)
    restored = ns["store"]
    assert isinstance(restored, stashdb.Repo) and restored.url == repo.url


def test_a_server_that_is_down_is_one_clear_line_without_the_password() -> None:
    url = "postgresql+psycopg://root:s3cret@127.0.0.1:1/test"
    with pytest.raises(stashdb.StoreUnreachable) as info:
        stashdb.log(repo=url)
    message = str(info.value)
    assert "127.0.0.1:1" in message and "s3cret" not in message and "***" in message
    from typer.testing import CliRunner

    from stashdb.cli import app

    result = CliRunner().invoke(app, ["log", "--store", url])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot connect" in result.stderr and "s3cret" not in result.stderr


def test_a_missing_database_is_one_clear_line() -> None:
    from sqlalchemy.engine import make_url

    from conftest import postgres_url

    url = make_url(postgres_url()).set(database="stashdb_no_such_database", password="pw")
    with pytest.raises(stashdb.StoreUnreachable, match="does not exist") as info:
        stashdb.log(repo=url.render_as_string(hide_password=False))
    assert "pw@" not in str(info.value)


def test_an_unsupported_url_is_refused() -> None:
    with pytest.raises(stashdb.StashError, match=r"SQLite or PostgreSQL|driver"):
        stashdb.log(repo="mysql://root@127.0.0.1/test")
