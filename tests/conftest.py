"""Shared fixtures: real SQLite stores in tmp_path, and fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import stashdb
from stashdb.api import _open_repos


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Each test runs in its own directory, with no store opened by another test."""
    monkeypatch.chdir(tmp_path)
    yield
    for repo in _open_repos.values():
        repo.close()
    _open_repos.clear()


@pytest.fixture
def repo(tmp_path: Path) -> stashdb.Repo:
    return stashdb.init(tmp_path)


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
