"""The schema is owned by the Alembic revisions, which ship inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import stashdb
from stashdb.db.schema import metadata

ROOT = Path(__file__).resolve().parents[1]


def test_migrations_match_the_schema_module(repo: stashdb.Repo) -> None:
    with repo.store.engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), metadata)
    assert drift == []


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
    assert "stashdb/migrations/versions/0001_format_1.py" in names
    assert "stashdb/migrations/script.py.mako" in names
