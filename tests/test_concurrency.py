"""Several processes on one store: creation and commits queue for the lock, none fail.

The full fault-and-load suite is issue #4; these keep the basics honest.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import stashdb

WRITER = """
import sys, stashdb
me, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    value = {"writer": me, "i": i, "data": list(range(i * 50))}
    stashdb.commit(f"{me}-{i}", namespace={"value": value})
"""


def run_writers(tmp_path: Path, writers: list[str], count: int) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), name, str(count)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in writers
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def test_processes_racing_to_create_the_store_all_commit(tmp_path: Path) -> None:
    run_writers(tmp_path, ["a", "b", "c", "d"], 1)
    assert sorted(c.message for c in stashdb.log(repo=tmp_path)) == ["a-0", "b-0", "c-0", "d-0"]


def test_concurrent_commits_to_one_branch_all_land_in_one_line(tmp_path: Path) -> None:
    stashdb.init(tmp_path)
    run_writers(tmp_path, ["a", "b", "c"], 10)
    log = stashdb.log(repo=tmp_path)
    assert Counter(c.message.split("-")[0] for c in log) == {"a": 10, "b": 10, "c": 10}
    # One linear history: every commit but the root has the previous one as parent.
    assert all(len(c.parents) == 1 for c in log[:-1]) and log[-1].parents == ()
    assert len({c.parents[0] for c in log[:-1]}) == 29
    for commit in log:
        writer, i = commit.message.split("-")
        value = stashdb.at(commit.id, repo=tmp_path)["value"]
        assert value == {"writer": writer, "i": int(i), "data": list(range(int(i) * 50))}
