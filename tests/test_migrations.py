"""The schema is owned by the Alembic revisions, which ship inside the package and upgrade
old stores on every backend."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, Table, create_engine, inspect, select
from typer.testing import CliRunner

import stashdb
from conftest import BACKENDS, postgres_schema, postgres_url, raw_connection
from stashdb.cli import app
from stashdb.storage import schema
from stashdb.storage.engine import connect, migrations_dir, schema_revision, upgrade
from stashdb.storage.format import SCHEMA_REVISIONS

ROOT = Path(__file__).resolve().parents[1]
REV1 = ROOT / "tests" / "data" / "store-rev1.db"


def test_migrations_match_the_schema_module(repo: stashdb.Repo) -> None:
    with raw_connection(repo) as conn:
        drift = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert drift == []


def test_the_code_knows_exactly_the_revisions_that_ship() -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    scripts = ScriptDirectory.from_config(config)
    chain = [s.revision for s in scripts.walk_revisions()][::-1]
    assert tuple(chain) == SCHEMA_REVISIONS
    assert scripts.get_heads() == [SCHEMA_REVISIONS[-1]]


def test_the_wheel_ships_the_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("stashdb-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "stashdb/migrations/env.py" in names
    for revision in ("0001_format_1.py", "0002_entries_name_index.py", "0003_objects_created.py",
                     "0004_damaged.py", "0005_trust.py"):
        assert f"stashdb/migrations/versions/{revision}" in names
    assert "stashdb/migrations/script.py.mako" in names


def _revision_1_store(backend: str, tmp_path: Path, stack: list[object]) -> str:
    """The URL of a store holding the revision-1 fixture's data, at revision 0001."""
    if backend.startswith("sqlite"):
        copy = tmp_path / "old.db"
        shutil.copy(REV1, copy)
        return f"sqlite:///{copy}" if backend == "sqlite" else f"sqlite+pysqlite:///{copy}"
    context = postgres_schema(postgres_url())
    url = context.__enter__()
    stack.append(context)
    database = connect(url)
    upgrade(database, "0001")  # the schema as revision 0001 made it
    database.dispose()
    target = create_engine(url)
    source = create_engine(f"sqlite:///{REV1}")
    with source.connect() as src, target.begin() as dst:
        in_revision_1 = set(inspect(src).get_table_names())
        for table in schema.metadata.sorted_tables:
            if table.name not in in_revision_1:
                continue  # a table a later revision adds
            old = Table(table.name, MetaData(), autoload_with=src)  # its revision-1 columns
            rows = [dict(r._mapping) for r in src.execute(select(old))]
            if table is schema.meta:
                rows = [r for r in rows if r["key"] != "format_version"]
            if rows:
                dst.execute(table.insert(), rows)
    source.dispose()
    target.dispose()
    return url


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_revision_1_store_is_upgraded_on_open_and_keeps_everything(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    contexts: list[object] = []
    try:
        url = _revision_1_store(backend, tmp_path, contexts)
        probe = connect(url)
        assert schema_revision(probe) == "0001"
        assert "ix_entries_name" not in {
            i["name"] for i in inspect(probe.engine).get_indexes("entries")
        }
        probe.dispose()

        repo = stashdb.open(url)
        assert schema_revision(repo.storage.database) == SCHEMA_REVISIONS[-1]
        said = capsys.readouterr().err
        assert "its 3 earlier commits are unsigned" in said  # told once, as it is upgraded
        stashdb.Repo.open(repo.url)
        assert "unsigned" not in capsys.readouterr().err
        with raw_connection(repo) as conn:
            names = {i["name"] for i in inspect(conn).get_indexes("entries")}
        assert "ix_entries_name" in names
        assert [c.message for c in repo.log(all=True)] == ["on side", "second", "first"]
        assert [t.name for t in repo.tags()] == ["v1"] and repo.head == "main"
        assert [e.name for e in repo.show("v1").entries]  # browsing works as before
        with pytest.raises(stashdb.UntrustedSnapshot, match=r"not signed.*sign_all"):
            repo.at("v1")  # written before signing: refused, and says what to do
        report = repo.sign_all()  # after review: digests the old values, signs, ids kept
        assert len(report.signed) == 3 and report.digested > 0 and not report.lacking
        assert [c.message for c in repo.log(all=True)] == ["on side", "second", "first"]
        first = repo.at("v1")
        assert first["numbers"] == [1, 2, 3] and first["holder"]["k"] is first["numbers"]
        assert repo.at("main")["factor"] == 3 and repo.at("main")["os"].sep == "/"
        assert [v.status for v in repo.history("numbers")] == ["changed", "added"]
        assert repo.verify().ok
        repo.commit("after the upgrade", namespace={"new": 1})
        assert repo.log()[0].parents[0] == repo.resolve("HEAD~1")
    finally:
        for context in contexts:
            context.__exit__(None, None, None)  # type: ignore[attr-defined]


def test_stashdb_migrate_says_what_it_did(tmp_path: Path) -> None:
    shutil.copy(REV1, tmp_path / "old.db")
    runner = CliRunner()
    first = runner.invoke(app, ["migrate", "--store", str(tmp_path / "old.db")])
    newest = SCHEMA_REVISIONS[-1]
    assert first.exit_code == 0 and f"from schema revision 0001 to {newest}" in first.stdout
    again = runner.invoke(app, ["migrate", "--store", str(tmp_path / "old.db"), "--json"])
    assert again.exit_code == 0 and f'"before": "{newest}"' in again.stdout


def test_a_store_from_a_newer_stashdb_with_a_compatible_revision_still_opens(
    repo: stashdb.Repo,
) -> None:
    from sqlalchemy import text

    # A later stashdb adds a revision that keeps format 1 (an index, say).
    with raw_connection(repo) as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    repo.close()
    stashdb.close_all()
    reopened = stashdb.open(repo.url)
    reopened.commit(namespace={"x": 1})
    assert schema_revision(reopened.storage.database) == "0099"
