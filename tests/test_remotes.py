"""Moving history between stores: remotes (push, fetch, pull, clone), lazy clones, kills."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import stashdb
from conftest import postgres_schema, postgres_url, raw_connection


def _count(repo: stashdb.Repo, table: str) -> int:
    with raw_connection(repo) as conn:
        return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar())


def _history(repo: stashdb.Repo) -> list[tuple[str, str]]:
    return [(c.id, c.message) for c in repo.log(all=True)]


def _work(repo: stashdb.Repo) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    ns: dict[str, Any] = {
        "df": pd.DataFrame({"a": rng.random(50_000), "b": rng.integers(0, 9, 50_000)}),
        "arr": rng.random(300_000),
        "rows": [{"id": i, "name": f"n{i}"} for i in range(2_000)],
        "x": 1,
    }
    repo.commit("first", namespace=ns)
    ns["x"] = 2
    ns["df"]["a"] = ns["df"]["a"] * 2
    repo.commit("second", namespace=ns)
    repo.tag("v1")
    ns["rows"].append({"id": -1})
    repo.commit("third", namespace=ns)
    return ns


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, pd.DataFrame):
        return bool(a.equals(b))
    if isinstance(a, np.ndarray):
        return bool(np.array_equal(a, b))
    return bool(a == b)


def test_round_trip_sqlite_postgres_sqlite_keeps_ids_and_values(tmp_path: Path) -> None:
    laptop = stashdb.init(tmp_path / "laptop")
    ns = _work(laptop)
    with postgres_schema(postgres_url()) as url:
        team = stashdb.init(url)
        laptop.add_remote("team", url)
        pushed = laptop.push("team", ["main", "v1"])
        assert pushed.commits == 3 and pushed.chunks > 0
        assert _history(team) == _history(laptop)
        copy, cloned = stashdb.clone(url, tmp_path / "desk")
        assert cloned.commits == 3
        assert [c.id for c in copy.log()] == [c.id for c in laptop.log()]
        assert copy.resolve("v1") == laptop.resolve("v1")
        back = copy.at("HEAD")
        for name, value in ns.items():
            assert _same(value, back[name]), name
        assert copy.at("v1")["x"] == 2
        for store in (laptop, team, copy):
            report = store.verify()
            assert report.ok, str(report)


def test_push_sends_only_what_the_remote_lacks(repo: stashdb.Repo, tmp_path: Path) -> None:
    local = stashdb.init(tmp_path / "local")
    ns = _work(local)
    local.add_remote("origin", repo.url)
    first = local.push()
    chunks, objects = _count(repo, "chunks"), _count(repo, "objects")
    assert first.chunks == chunks and first.objects == objects and first.commits == 3
    # A push where the remote has everything sends nothing.
    again = local.push()
    assert (again.commits, again.objects, again.chunks) == (0, 0, 0)
    assert [r.what for r in again.refs] == ["up to date"]
    # One small change: one commit, and only its new object's chunks.
    ns["x"] = 99
    local.commit("small", namespace=ns)
    small = local.push()
    assert small.commits == 1 and small.objects == 1 and small.chunks == 1
    assert _count(repo, "chunks") == chunks + 1
    assert repo.at("HEAD")["x"] == 99
    # The remote-tracking ref followed the push, and is a rev here.
    assert local.resolve("origin/main") == local.resolve("HEAD")


def test_a_push_that_is_not_a_fast_forward_is_refused(tmp_path: Path) -> None:
    remote = stashdb.init(tmp_path / "remote")
    remote.commit("base", namespace={"x": 1})
    alice, _ = stashdb.clone(remote.url, tmp_path / "alice")
    bob, _ = stashdb.clone(remote.url, tmp_path / "bob")
    alice.commit("alice", namespace={"x": 2})
    bob.commit("bob", namespace={"x": 3})
    alice.push()
    before = remote.resolve("main")
    with pytest.raises(stashdb.NotFastForward, match="pull"):
        bob.push()
    assert remote.resolve("main") == before  # nothing moved
    # Pulling a diverged branch is refused too; the commits are fetched all the same.
    with pytest.raises(stashdb.NotFastForward, match="reset"):
        bob.pull()
    assert bob.resolve("origin/main") == before
    forced = bob.push(force=True)
    assert forced.refs[0].what == "forced"
    assert remote.resolve("main") == bob.resolve("main")
    # Alice's commit is not in the remote's history now: her pull refuses, until she
    # takes theirs (what the message says).
    with pytest.raises(stashdb.NotFastForward):
        alice.pull()
    alice.reset("main", "origin/main")
    assert alice.pull().refs[-1].what == "up to date"
    assert alice.at("main")["x"] == 3


def test_pull_fast_forwards_and_creates_missing_branches(tmp_path: Path) -> None:
    remote = stashdb.init(tmp_path / "remote")
    remote.commit("base", namespace={"x": 1})
    mine, _ = stashdb.clone(remote.url, tmp_path / "mine")
    remote.commit("more", namespace={"x": 2})
    remote.branch("experiment")
    remote.commit("exp", namespace={"x": 3}, branch="experiment")
    done = mine.pull()
    assert [r.what for r in done.refs if r.name == "main"] == ["moved"]
    assert mine.at("main")["x"] == 2
    mine.pull(refs=["experiment"])
    assert mine.at("experiment")["x"] == 3
    # Tags come with a fetch; branches gone there lose their tracking refs.
    remote.tag("release")
    remote.delete_branch("experiment")
    fetched = mine.fetch()
    assert mine.resolve("release") == remote.resolve("release")
    assert "origin/experiment" not in {r.name for r in mine.remote_refs()}
    assert any(r.name == "origin/experiment" and r.new is None for r in fetched.refs)


def test_two_concurrent_ref_moves_exactly_one_wins(repo: stashdb.Repo) -> None:
    base = repo.commit("base", namespace={"x": 1})
    a = repo.commit("a", namespace={"x": 2})
    repo.reset("main", base.id)
    b = repo.commit("b", namespace={"x": 3}, branch="main")
    repo.reset("main", base.id)
    writer = repo.storage.commits
    won = [writer.move_ref("main", "branch", base.id, a.id),
           writer.move_ref("main", "branch", base.id, b.id)]
    assert won == [True, False]
    assert repo.resolve("main") == a.id


def test_two_concurrent_pushes_one_wins_the_other_is_told(tmp_path: Path) -> None:
    remote = stashdb.init(tmp_path / "remote")
    remote.commit("base", namespace={"x": 1})
    for who in ("alice", "bob"):
        copy, _ = stashdb.clone(remote.url, tmp_path / who)
        copy.commit(who, namespace={"x": who, "data": np.random.default_rng(len(who)).random(
            400_000)})
        copy.close()
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import time, stashdb
                repo = stashdb.open({str(tmp_path / who)!r})
                time.sleep(max(0, {start} - time.time()))
                repo.push()
            """)],
            stderr=subprocess.PIPE, text=True, env={**os.environ})
        for who in ("alice", "bob")
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0, results
    loser = next(err for code, err in results if code != 0)
    assert "NotFastForward" in loser
    winner = next(who for who, (code, _) in zip(("alice", "bob"), results) if code == 0)
    assert remote.show("main").message == winner
    assert remote.verify().ok


def _big_history(repo: stashdb.Repo, commits: int = 10) -> None:
    # 200 MB: chunks land in several 64 MB batches, so a kill after the first
    # batch's rows lands while most of the transfer is still to come.
    rng = np.random.default_rng(1)
    ns: dict[str, Any] = {}
    for i in range(commits):
        ns[f"block{i}"] = rng.random(2_500_000)  # 20 MB each, incompressible
        repo.commit(f"block {i}", namespace=ns)


def _kill_when(proc: subprocess.Popen[str], db: Path, table: str) -> bool:
    """SIGKILL ``proc`` once ``table`` of the SQLite store ``db`` has rows; False if it ended."""
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(db, timeout=0.05) as conn:
                if conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    return True
        except sqlite3.OperationalError:  # locked by the writer: look again
            pass
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("table", ["chunks", "objects"])
def test_a_push_killed_midway_loses_nothing_and_resumes(tmp_path: Path, table: str) -> None:
    local = stashdb.init(tmp_path / "local")
    _big_history(local)
    remote = stashdb.init(tmp_path / "remote")
    remote.commit("theirs", namespace={"x": 1}, branch="other")
    local.add_remote("origin", remote.url)
    local.close()
    db = tmp_path / "remote" / ".stashdb" / "stash.db"
    before = _count(remote, table)
    remote.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import stashdb; stashdb.open({str(tmp_path / 'local')!r}).push()"],
        text=True)
    # Killed once the first of the push's own rows lands in that table.
    assert _kill_when(proc, db, f"{table} WHERE rowid > {before}"), "the push ended first"
    remote = stashdb.open(tmp_path / "remote")
    local = stashdb.open(tmp_path / "local")
    for store in (local, remote):
        report = store.verify()
        assert report.ok, str(report)
    assert "main" not in {b.name for b in remote.branches()}  # no ref to a partial history
    landed = _count(remote, "chunks")
    again = local.push()
    total = _count(remote, "chunks")
    assert again.chunks == total - landed < total - 1  # only what was still missing
    assert remote.resolve("main") == local.resolve("main")
    assert remote.verify().ok
    assert np.array_equal(remote.at("main")["block9"], local.at("main")["block9"])


def test_a_pull_killed_midway_loses_nothing_and_resumes(tmp_path: Path) -> None:
    remote = stashdb.init(tmp_path / "remote")
    remote.commit("base", namespace={"x": 1})
    local, _ = stashdb.clone(remote.url, tmp_path / "local")
    local.commit("mine", namespace={"y": 2}, branch="mine")
    _big_history(remote)
    local.close()
    remote.close()
    db = tmp_path / "local" / ".stashdb" / "stash.db"
    before = _count(stashdb.open(tmp_path / "local"), "chunks")
    stashdb.close_all()
    proc = subprocess.Popen(
        [sys.executable, "-c", f"import stashdb; stashdb.open({str(tmp_path / 'local')!r}).pull()"],
        text=True)
    assert _kill_when(proc, db, f"chunks WHERE rowid > {before}")
    local = stashdb.open(tmp_path / "local")
    remote = stashdb.open(tmp_path / "remote")
    assert local.verify().ok and remote.verify().ok
    assert local.show("main").message == "base"  # the branch did not move to a partial history
    assert local.at("mine")["y"] == 2
    landed = _count(local, "chunks")
    done = local.pull()
    assert done.commits == 10  # the branch moved only now: the commits landed only now
    assert done.chunks == _count(local, "chunks") - landed  # only what was still missing
    assert landed > before
    assert local.resolve("main") == remote.resolve("main")
    assert local.verify().ok


def test_a_lazy_clone_fetches_only_what_is_checked_out(repo: stashdb.Repo, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ns = {"big": rng.random(1_000_000), "other": rng.random(1_000_000), "small": {"k": 1}}
    repo.commit("data", namespace=ns)
    ns["small"] = {"k": 2}
    repo.commit("more", namespace=ns)
    lazy, cloned = stashdb.clone(repo.url, tmp_path / "lazy", lazy=True)
    assert cloned.commits == 2 and cloned.chunks == 0
    assert _count(lazy, "chunks") == 0
    assert lazy.log()[0].message == "more"  # browsing needs no data
    report = lazy.verify()
    assert report.ok and report.unfetched == 4, str(report)
    assert lazy.at("HEAD")["small"] == {"k": 2}
    assert _count(lazy, "objects") == 1 and _count(lazy, "chunks") == 1
    target: dict[str, Any] = {}
    lazy.checkout("HEAD", namespace=target, only=["big"])
    assert np.array_equal(target["big"], ns["big"])
    big_chunks = _count(lazy, "chunks") - 1
    remote_chunks = _count(repo, "chunks")
    assert 0 < big_chunks < remote_chunks - 1  # big's, not other's
    assert lazy.at("HEAD~1")["small"] == {"k": 1}
    done = lazy.fetch(all_data=True)
    assert done.objects == 1  # only "other" was still missing
    assert _count(lazy, "chunks") == remote_chunks
    full = lazy.verify()
    assert full.ok and full.unfetched == 0
    # No longer lazy: it works without the remote.
    assert lazy.remotes() and not lazy.storage.reader.notes("lazy_remote")


def test_a_lazy_clone_says_when_its_remote_is_gone(tmp_path: Path) -> None:
    origin = stashdb.init(tmp_path / "origin")
    origin.commit("one", namespace={"x": [1, 2, 3]})
    origin.close()
    lazy, _ = stashdb.clone(origin.url, tmp_path / "lazy", lazy=True)
    stashdb.close_all()
    (tmp_path / "origin" / ".stashdb" / "stash.db").rename(tmp_path / "moved.db")
    lazy = stashdb.open(tmp_path / "lazy")
    with pytest.raises(stashdb.FetchFailed, match="could not be fetched"):
        lazy.at("HEAD")["x"]
    assert lazy.log()[0].message == "one"


def test_encrypted_stores_refuse_to_send_and_say_why(tmp_path: Path) -> None:
    sealed = stashdb.init(tmp_path / "sealed", encrypt=True)
    sealed.commit("secret", namespace={"x": 1})
    plain = stashdb.init(tmp_path / "plain")
    sealed.add_remote("origin", plain.url)
    with pytest.raises(stashdb.TransferRefused, match="encrypted"):
        sealed.push()
    with pytest.raises(stashdb.TransferRefused, match="encrypted"):
        sealed.export("main", tmp_path / "out.bundle")
    assert not (tmp_path / "out.bundle").exists()
    assert plain.log() == []


def test_signatures_travel_with_their_commits(tmp_path: Path) -> None:
    local = stashdb.init(tmp_path / "local")
    made = local.commit("signed", namespace={"x": 1})
    copy, _ = stashdb.clone(local.url, tmp_path / "copy")
    signer = copy.signers([copy.show(made.id)])[made.id]
    assert signer.trusted and signer.key_id == local.signers([made])[made.id].key_id
    copy.check_trusted(copy.show(made.id))


def test_remote_names_are_checked(tmp_path: Path) -> None:
    local = stashdb.init(tmp_path / "local")
    other = stashdb.init(tmp_path / "other")
    local.add_remote("origin", other.url)
    with pytest.raises(stashdb.RemoteExists):
        local.add_remote("origin", other.url)
    with pytest.raises(stashdb.RemoteNotFound, match="origin"):
        local.push("team")
    with pytest.raises(stashdb.NotAStore):
        local.add_remote("gone", stashdb.store_url(tmp_path / "nowhere"))
    with pytest.raises(stashdb.TransferRefused, match="same store"):
        local.add_remote("self", local.url)
        local.push("self")
    local.remove_remote("origin")
    assert [r.name for r in local.remotes()] == ["self"]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stashdb", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_command_line_clones_pushes_and_pulls(tmp_path: Path) -> None:
    origin = stashdb.init(tmp_path / "origin")
    origin.commit("base", namespace={"x": 1})
    origin.close()
    done = _cli("clone", str(tmp_path / "origin"), "copy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cloned into" in done.stdout
    copy = tmp_path / "copy"
    listed = _cli("remote", "list", cwd=copy)
    assert listed.stdout.startswith("origin\tsqlite:///")
    stashdb.open(copy).commit("mine", namespace={"x": 2})
    stashdb.close_all()
    pushed = _cli("push", cwd=copy)
    assert pushed.returncode == 0 and "main:" in pushed.stdout, pushed.stderr
    logged = _cli("log", "--all", cwd=copy)
    assert "origin/main" in logged.stdout
    # `stashdb log PATH` shows that store's history.
    there = _cli("log", str(tmp_path / "origin"), cwd=tmp_path)
    assert "mine" in there.stdout and "base" in there.stdout, there.stderr
    other = stashdb.open(tmp_path / "origin")
    other.commit("theirs", namespace={"x": 3})
    stashdb.close_all()
    stashdb.open(copy).commit("diverged", namespace={"x": 4})
    stashdb.close_all()
    refused = _cli("push", cwd=copy)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "stashdb pull" in refused.stderr
    refused = _cli("pull", cwd=copy)
    assert refused.returncode == 1 and "origin/main" in refused.stderr
    bad = _cli("push", "nowhere", cwd=copy)
    assert bad.returncode == 1 and "no remote 'nowhere'" in bad.stderr
    bad = _cli("remote", "add", "x", str(tmp_path / "missing"), cwd=copy)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1


def test_a_lazy_clone_commits_a_manifest_it_has_no_data_for(tmp_path: Path) -> None:
    origin = stashdb.init(tmp_path / "origin")
    origin.commit("one", namespace={"x": [1, 2, 3], "y": "why"})
    lazy, _ = stashdb.clone(origin.url, tmp_path / "lazy", lazy=True)
    head = lazy.show("HEAD")
    made = lazy.commit_manifest(head.entries, branch="again", message="same state", like=head)
    assert lazy.at(made.id)["x"] == [1, 2, 3]
    assert lazy.verify().ok


def test_a_sender_whose_rows_lie_is_refused(tmp_path: Path) -> None:
    local = stashdb.init(tmp_path / "local")
    local.commit("two", namespace={"x": list(range(1000)), "y": "other value"})
    remote = stashdb.init(tmp_path / "remote")
    local.add_remote("origin", remote.url)
    with raw_connection(local) as conn:  # x's layout now names y's chunk
        rows = conn.exec_driver_sql("SELECT object_id, chunk_id FROM object_chunks").fetchall()
        conn.exec_driver_sql("UPDATE object_chunks SET chunk_id = ? WHERE object_id = ?",
                             (rows[1][1], rows[0][0]))
        conn.commit()
    with pytest.raises(stashdb.StoreDamaged, match="sending store"):
        local.push()
    assert remote.branches() == [] and _count(remote, "objects") == 0


def test_a_lazy_clone_pushes_without_fetching_what_the_remote_has(tmp_path: Path) -> None:
    origin = stashdb.init(tmp_path / "origin")
    base = origin.commit("big", namespace={"big": np.random.default_rng(0).random(1_000_000),
                                           "x": 1})
    lazy, _ = stashdb.clone(origin.url, tmp_path / "lazy", lazy=True)
    # Only x changed: "big" keeps its entry without being read (or fetched).
    lazy.commit_changes(lazy.show("HEAD"), {"x"}, "x only", namespace={"x": 2, "big": None})
    assert base.id in {c.id for c in lazy.log()}
    before = _count(lazy, "chunks")
    done = lazy.push()
    assert done.commits == 1 and done.objects == 1
    assert _count(lazy, "chunks") == before  # "big" stayed where it is
    # Exporting a lazy clone fetches what the file needs.
    lazy.export("main", tmp_path / "all.bundle")
    copy = stashdb.init(tmp_path / "copy")
    copy.import_bundle(tmp_path / "all.bundle")
    assert np.array_equal(copy.at("main")["big"], origin.at(base.id)["big"])


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, bytes]:
    import pty
    import select

    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "stashdb", *args], cwd=cwd, stdin=child,
                            stdout=child, stderr=child, close_fds=True,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
    os.close(child)
    seen = b""
    while select.select([main], [], [], 60)[0]:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        seen += data
    os.close(main)
    return proc.wait(timeout=60), seen


def test_push_shows_its_progress_in_bytes_on_a_terminal(tmp_path: Path) -> None:
    local = stashdb.init(tmp_path / "local")
    local.commit("data", namespace={"a": np.random.default_rng(0).random(4_000_000)})
    remote = stashdb.init(tmp_path / "remote")
    local.add_remote("origin", remote.url)
    stashdb.close_all()
    quiet = _cli("push", cwd=tmp_path / "local")
    assert quiet.returncode == 0 and "pushing" not in quiet.stdout + quiet.stderr
    # The push above sent everything: a second remote, so the bar has bytes to show.
    stashdb.init(tmp_path / "remote2").close()
    local = stashdb.open(tmp_path / "local")
    local.add_remote("second", stashdb.store_url(tmp_path / "remote2"))
    stashdb.close_all()
    code, seen = _on_a_terminal(["push", "--store", str(tmp_path / "local"), "second"], tmp_path)
    assert code == 0 and b"pushing" in seen and b"MB" in seen, seen
