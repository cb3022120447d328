"""Nothing lost: real SIGKILLs, real concurrent processes, real damage, real disk limits."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import stashdb
from conftest import raw_connection
from stashdb.cli import app
from stashdb.storage import schema

# A workspace that is a pure function of its number, so any commit can be checked
# against what it must hold. Some values change every time, some never do.
WORKSPACE = """
import random

def workspace(i):
    rnd = random.Random(i)
    return {
        "i": i,
        "blob": rnd.randbytes(rnd.randint(50_000, 2_000_000)),
        "items": [rnd.random() for _ in range(rnd.randint(100, 20_000))],
        "const": "the same every time",
        "shared": list(range(1000)),
    }
"""
namespace: dict[str, Any] = {}
exec(WORKSPACE, namespace)
workspace = namespace["workspace"]

WRITER = WORKSPACE + """
import sys, stashdb
repo = stashdb.open(sys.argv[1])
start, count, branch = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] or None
print("ready", flush=True)
for i in range(start, start + count):
    repo.commit(f"c{i}", namespace=workspace(i), branch=branch)
    print(i, flush=True)
"""


def start_writer(tmp_path: Path, store: str, start: int, count: int, branch: str = "") -> Any:
    script = tmp_path / "writer.py"
    if not script.exists():
        script.write_text(WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(store), str(start), str(count), branch],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def assert_commits_hold_what_they_must(repo: stashdb.Repo, commits: list[stashdb.Commit]) -> None:
    for commit in commits:
        if not commit.message.startswith("c"):
            continue
        expected = workspace(int(commit.message[1:]))
        snapshot = repo.at(commit.id)
        assert dict(snapshot) == expected, commit.message


# -- 1. crash safety ---------------------------------------------------------------------


def test_sigkill_at_random_points_of_commits_loses_nothing(tmp_path: Path, store_url: str) -> None:
    store = store_url
    repo = stashdb.open(store)
    rng = random.Random(20261122)
    completed: set[int] = set()
    kills = 0
    # 50 real kills on SQLite (the embedded default, whose file we must keep sound);
    # 15 on PostgreSQL, whose server owns durability.
    planned = 50 if store.startswith("sqlite") else 15
    for k in range(planned):
        proc = start_writer(tmp_path, store, start=k * 1000, count=1000)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        completed.update(int(line) for line in out.split())
    assert kills == planned

    report = repo.verify()
    assert report.ok, str(report)
    commits = repo.log()
    landed = {int(c.message[1:]) for c in commits}
    assert completed <= landed  # every commit that returned is there
    assert len(landed) == len(commits)  # and nothing half-written besides
    assert_commits_hold_what_they_must(repo, commits)

    freed = repo.gc(grace=0)  # leftovers of interrupted commits are reclaimed
    assert repo.verify().ok and repo.gc(grace=0).chunks == 0
    assert freed.chunks >= 0
    assert_commits_hold_what_they_must(repo, repo.log(limit=5))


# -- 2. concurrent writers -----------------------------------------------------------------

READER = """
import sys, time, stashdb
repo = stashdb.open(sys.argv[1])
done = sys.argv[2]
reads = 0
import os
while not os.path.exists(done):
    newest = [c for c in repo.log(all=True) if c.message != "base"][:1]
    for commit in newest:
        ns = {}
        report = repo.checkout(commit.id, namespace=ns)
        assert report.ok and ns["i"] == int(commit.message[1:]), commit.message
    reads += 1
print(reads)
"""


@pytest.mark.parametrize("layout", ["one branch", "separate branches"])
def test_four_writers_and_a_reader(tmp_path: Path, store_url: str, layout: str) -> None:
    store = store_url
    repo = stashdb.open(store)
    repo.commit("base", namespace={"base": True})
    branches = ["", "", "", ""] if layout == "one branch" else ["b0", "b1", "b2", "b3"]
    for name in set(branches) - {""}:
        repo.branch(name)
    (tmp_path / "reader.py").write_text(READER)
    done = tmp_path / "done"
    reader = subprocess.Popen(
        [sys.executable, str(tmp_path / "reader.py"), str(store), str(done)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    writers = [start_writer(tmp_path, store, w * 100, 25, b) for w, b in enumerate(branches)]
    for proc in writers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err  # none failed with "database is locked"
    done.touch()
    reads, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert int(reads) > 0

    commits = [c for c in repo.log(all=True) if c.message != "base"]
    assert sorted(int(c.message[1:]) for c in commits) == sorted(
        w * 100 + i for w in range(4) for i in range(25)
    )
    if layout == "one branch":
        assert len(repo.log()) == 101  # one line of history holds all of them
    else:
        for w, name in enumerate(branches):
            assert {c.message for c in repo.log(branch=name)} == {
                "base", *(f"c{w * 100 + i}" for i in range(25))}
    assert_commits_hold_what_they_must(repo, commits)
    assert repo.verify().ok


def test_gc_during_concurrent_commits_loses_nothing(tmp_path: Path, store_url: str) -> None:
    store = store_url
    repo = stashdb.open(store)
    writers = [start_writer(tmp_path, store, w * 100, 20) for w in range(2)]
    collections = 0
    while any(p.poll() is None for p in writers):
        repo.gc()
        collections += 1
    for proc in writers:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert collections > 0
    commits = repo.log()
    assert len(commits) == 40
    assert repo.verify().ok
    assert_commits_hold_what_they_must(repo, commits)


# -- 3. corruption ---------------------------------------------------------------------------


def _chunk_of(repo: stashdb.Repo, commit: stashdb.Commit, name: str) -> bytes:
    from sqlalchemy import select

    object_id = bytes.fromhex(commit.entry(name).object_id or "")
    with raw_connection(repo) as conn:
        return bytes(conn.execute(
            select(schema.object_chunks.c.chunk_id)
            .where(schema.object_chunks.c.object_id == object_id)
            .limit(1)
        ).scalar_one())


def _flip_byte(repo: stashdb.Repo, chunk: bytes) -> None:
    from sqlalchemy import select, update

    c = schema.chunks.c
    with raw_connection(repo) as conn:  # damage done behind stashdb's back
        data = conn.execute(select(c.data).where(c.id == chunk)).scalar_one()
        damaged = bytes([data[0] ^ 0x01]) + data[1:]
        conn.execute(update(schema.chunks).where(c.id == chunk).values(data=damaged))


def test_a_flipped_byte_is_caught_on_read_and_by_verify(repo: stashdb.Repo) -> None:
    first = repo.commit("one", namespace={"good": [1, 2, 3], "bad": "payload " * 1000})
    second = repo.commit("two", namespace={"good": [1, 2, 3], "bad": "payload " * 1000, "n": 2})
    chunk = _chunk_of(repo, second, "bad")
    _flip_byte(repo, chunk)

    ns: dict[str, Any] = {}
    report = repo.checkout(namespace=ns)
    assert ns == {"good": [1, 2, 3], "n": 2}
    assert [f.name for f in report.failed] == ["bad"] and chunk.hex()[:16] in report.failed[0].reason
    with pytest.raises(stashdb.CorruptChunk) as info:
        repo.at(first.id)["bad"]
    assert info.value.name == "bad" and info.value.chunk_id == chunk.hex()

    verdict = repo.verify()
    assert not verdict.ok and [p.kind for p in verdict.problems] == ["damaged chunk"]
    assert set(verdict.problems[0].affects) == {(first.id, "bad"), (second.id, "bad")}
    result = CliRunner().invoke(app, ["verify", "--store", repo.url])
    assert result.exit_code == 1 and "damaged chunk" in result.stdout and "bad" in result.stdout


def test_a_missing_chunk_and_a_missing_object_are_reported(repo: stashdb.Repo) -> None:
    from sqlalchemy import delete

    commit = repo.commit(namespace={"a": list(range(1000)), "b": "text" * 500, "c": 3})
    chunk = _chunk_of(repo, commit, "a")
    with raw_connection(repo) as conn:
        conn.execute(delete(schema.chunks).where(schema.chunks.c.id == chunk))
        b_object = bytes.fromhex(commit.entry("b").object_id or "")
        conn.execute(delete(schema.objects).where(schema.objects.c.id == b_object))
    problems = {p.kind: p for p in repo.verify().problems}
    assert set(problems) == {"missing chunk", "missing object"}
    assert problems["missing chunk"].affects == ((commit.id, "a"),)
    assert problems["missing object"].affects == ((commit.id, "b"),)
    ns: dict[str, Any] = {}
    report = repo.checkout(namespace=ns)
    assert ns == {"c": 3} and sorted(f.name for f in report.failed) == ["a", "b"]


def test_a_truncated_database_is_a_clear_error(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    repo.commit(namespace={"x": os.urandom(2_000_000)})
    repo.close()
    stashdb.close_all()
    db = tmp_path / ".stashdb" / "stash.db"
    db.write_bytes(db.read_bytes()[: 3 * 65536])
    result = CliRunner().invoke(app, ["verify", "--store", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.startswith("stashdb: error:") and "Traceback" not in result.stderr


# -- 5. gc and prune ---------------------------------------------------------------------------


def test_prune_keeps_tags_heads_and_what_others_reach(repo: stashdb.Repo) -> None:
    made = [repo.commit(f"m{i}", namespace={"v": os.urandom(20_000), "i": i}) for i in range(10)]
    repo.tag("release", made[2].id)
    repo.branch("side", made[4].id)
    repo.commit("s1", namespace={"side": True}, branch="side")
    before = repo.stats()

    report = repo.prune(keep_last=3)
    # Kept: the newest three, side's fork point m4, the tagged m2.
    assert [c.message for c in repo.log()] == ["m9", "m8", "m7", "m4", "m2"]
    assert sorted(report.commits) == sorted(made[i].id for i in (0, 1, 3, 5, 6))
    assert repo.show(made[7].id).parents == (made[4].id,)  # re-linked over m6, m5
    assert [c.message for c in repo.log(branch="side")] == ["s1", "m4", "m2"]
    assert report.gc.chunks >= 2 and report.gc.bytes >= 40_000
    assert repo.stats().stored_bytes < before.stored_bytes
    assert repo.verify().ok

    repo.delete_branch("side")
    again = repo.prune(keep_last=1)
    assert [c.message for c in repo.log()] == ["m9", "m2"]  # the tagged commit stays
    assert repo.show(made[9].id).parents == (made[2].id,)
    assert len(again.commits) == 3 and repo.verify().ok
    assert repo.at(made[2].id)["i"] == 2

    result = CliRunner().invoke(app, ["prune", "--store", repo.url, "--keep-days", "1"])
    assert result.exit_code == 0 and "dropped 0 commits" in result.stdout
    result = CliRunner().invoke(app, ["prune", "--store", repo.url])
    assert result.exit_code == 1 and "--keep-last" in result.stderr


def test_gc_frees_what_no_commit_refers_to(repo: stashdb.Repo) -> None:
    repo.commit(namespace={"x": 1})
    writer = repo.storage.object_writer()
    writer.put("pickle", [os.urandom(100_000)])  # as an interrupted commit leaves it
    writer.flush()
    assert repo.gc().chunks == 0  # written just now: maybe a commit in flight, so spared
    freed = repo.gc(grace=0)
    assert (freed.objects, freed.chunks) == (1, 1) and freed.bytes >= 100_000
    result = CliRunner().invoke(app, ["gc", "--store", repo.url, "--json", "--grace", "0"])
    assert result.exit_code == 0 and '"chunks": 0' in result.stdout


# -- 6. disk full ----------------------------------------------------------------------------------


def test_a_file_size_limit_fails_the_commit_and_keeps_the_store(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    repo.commit("before", namespace={"small": [1, 2, 3]})
    repo.close()
    stashdb.close_all()
    db = tmp_path / ".stashdb" / "stash.db"
    limit = db.stat().st_size + 300_000

    def cap_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    script = tmp_path / "big.py"
    script.write_text("import os\nblob = os.urandom(5_000_000)\nsmall = [4]\n")
    result = subprocess.run(
        [sys.executable, "-m", "stashdb", "commit", "-m", "too big", str(script)],
        cwd=tmp_path, capture_output=True, text=True, preexec_fn=cap_file_size, timeout=120,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "could not write" in lines[0] and "store is as it was" in lines[0]

    repo = stashdb.open(tmp_path)
    assert [c.message for c in repo.log()] == ["before"]
    assert repo.verify().ok
    ns: dict[str, Any] = {}
    repo.checkout(namespace=ns)
    assert ns == {"small": [1, 2, 3]}


def test_a_commit_whose_objects_gc_took_is_refused_not_written(repo: stashdb.Repo) -> None:
    from stashdb.storage.commits import ObjectsCollected
    from stashdb.workspace.capture import capture
    from stashdb.workspace.environment import origin

    ns = {"blob": os.urandom(100_000)}
    writer = repo.storage.object_writer()
    captured = capture(ns, ["blob"], writer)
    writer.flush()  # the commit's objects are in; its final transaction is not yet
    assert repo.gc(grace=0).objects == 1  # a gc without grace runs in between, takes them
    with pytest.raises(ObjectsCollected):
        repo.storage.commits.write_commit(
            branch="main", message="x", entries=captured.entries, origin=origin("__main__", {})
        )
    assert repo.log() == [] and repo.verify().ok
    commit = repo.commit("again", namespace=ns)  # Repo.commit stores them again
    assert repo.at(commit.id)["blob"] == ns["blob"] and repo.verify().ok


def test_prune_keep_days_drops_only_older_commits(repo: stashdb.Repo) -> None:
    from sqlalchemy import update

    made = [repo.commit(f"d{i}", namespace={"i": i}) for i in range(4)]
    ten_days_ago = time.time() - 10 * 86400
    with raw_connection(repo) as conn:  # as if they were made back then
        conn.execute(
            update(schema.commits)
            .where(schema.commits.c.id.in_([c.id for c in made[:2]]))
            .values(time=ten_days_ago)
        )
    report = repo.prune(keep_days=5)
    assert sorted(report.commits) == sorted(c.id for c in made[:2])
    assert [c.message for c in repo.log()] == ["d3", "d2"] and repo.verify().ok
    with pytest.raises(stashdb.StashError, match="negative"):
        repo.prune(keep_last=-1)
