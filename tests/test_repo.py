"""A Repo as a script and a process see it: whose namespace, how long it waits, after fork()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import stashdb
from conftest import last_json, run_python


def test_repo_commit_and_checkout_use_the_callers_namespace_in_a_script(tmp_path: Path) -> None:
    result = run_python(
        """
        import builtins, json, stashdb, stashdb.repo
        repo = stashdb.init(".")
        x = [1, 2]
        builtins.names = repo.commit("m").names  # out of the namespace that checkout resets
        x.append(3)
        extra = "not in the snapshot"
        builtins.before = sorted(vars(stashdb.repo))
        builtins.report = repo.checkout()
        print(json.dumps({
            "names": builtins.names, "x": x, "extra": "extra" in globals(),
            "removed": builtins.report.removed,
            "repo_module_intact": sorted(vars(stashdb.repo)) == builtins.before,
        }))
        """,
        tmp_path,
    )
    out = last_json(result)
    assert out["names"] == ["builtins", "json", "repo", "stashdb", "x"]  # not stashdb.repo's
    # `extra` was never committed: an exact checkout leaves it (git's untracked files).
    assert out["x"] == [1, 2] and out["extra"] is True and out["removed"] == []
    assert out["repo_module_intact"]


def test_every_method_that_takes_an_implicit_namespace_takes_the_callers(tmp_path: Path) -> None:
    # Through the Repo and through the module-level functions, from a function's globals.
    result = run_python(
        """
        import json, stashdb
        repo = stashdb.init(".")
        value = 41
        def save_and_change():
            repo.commit("in a function")
            stashdb.commit("through the api")
            global value
            value = 99
            repo.checkout("HEAD", only=["value"])
            first = value
            globals()["value"] = 98
            stashdb.checkout("HEAD", only=["value"])
            return first
        first = save_and_change()
        print(json.dumps([first, value, [c.message for c in repo.log()]]))
        """,
        tmp_path,
    )
    assert last_json(result) == [41, 41, ["through the api", "in a function"]]


HOLD_LOCK = """
import sys, time, stashdb
repo = stashdb.open(sys.argv[1])
with repo.storage.database.write():
    print("holding", flush=True)
    time.sleep(60)
"""


def _hold_the_write_lock(url: str, tmp_path: Path) -> subprocess.Popen[str]:
    script = tmp_path / "hold_lock.py"
    script.write_text(textwrap.dedent(HOLD_LOCK))
    holder = subprocess.Popen(
        [sys.executable, str(script), url], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_lock_held_by_another_process_is_store_locked_after_the_timeout(
    store_url: str, tmp_path: Path
) -> None:
    repo = stashdb.open(store_url, lock_timeout=0.5)
    assert repo.lock_timeout == 0.5
    repo.commit("before", namespace={"x": 1})
    holder = _hold_the_write_lock(store_url, tmp_path)
    try:
        start = time.monotonic()
        with pytest.raises(stashdb.StoreLocked) as info:
            repo.commit("blocked", namespace={"x": 2})
        waited = time.monotonic() - start
        assert 0.4 <= waited < 10 and 0.4 <= info.value.waited < 10
        message = str(info.value)
        assert "another process" in message and "write lock" in message
        assert "space" not in message  # it is not a full disk
        with pytest.raises(stashdb.StoreLocked):
            repo.tag("v1")
        assert [c.message for c in repo.log()] == ["before"]  # reads still work
    finally:
        holder.kill()
        holder.wait()
    repo.commit("after", namespace={"x": 3})  # the lock is free again
    assert [c.message for c in repo.log()] == ["after", "before"]


def test_the_command_line_waits_as_long_as_lock_timeout_says(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    repo.commit("before", namespace={"x": 1})
    holder = _hold_the_write_lock(repo.url, tmp_path)
    try:
        for args in (["tag", "v1", "--lock-timeout", "0.3"], ["--lock-timeout=0.3", "tag", "v1"]):
            done = subprocess.run(
                [sys.executable, "-m", "stashdb", *args], cwd=tmp_path, capture_output=True,
                text=True, timeout=60,
            )
            assert done.returncode == 1
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and "is locked" in lines[0] and "another process" in lines[0]
    finally:
        holder.kill()
        holder.wait()


def test_the_default_lock_wait_is_five_minutes(tmp_path: Path) -> None:
    assert stashdb.init(tmp_path).lock_timeout == 300


def test_a_repo_keeps_working_in_a_forked_child_and_in_its_parent(repo: stashdb.Repo) -> None:
    repo.commit("before", namespace={"x": 1})
    pid = os.fork()
    if pid == 0:  # the child: the inherited Repo reconnects; the API opens its own
        status = 1
        try:
            repo.commit("in the child", namespace={"x": 2}, branch="child")
            fresh = stashdb.open(repo.url)
            if fresh is not repo and fresh.at("child")["x"] == 2:
                status = 0
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert repo.at("child")["x"] == 2  # the parent's connections were left alone
    repo.commit("in the parent", namespace={"x": 3})
    assert [c.message for c in repo.log()] == ["in the parent", "before"]


def test_close_all_closes_the_stores_and_they_reopen(tmp_path: Path) -> None:
    first = stashdb.init(tmp_path)
    first.commit(namespace={"x": 1})
    stashdb.close_all()
    again = stashdb.open(tmp_path)
    assert again is not first and again.at()["x"] == 1
    assert first.at()["x"] == 1  # a closed Repo reopens its connections when used


def test_a_submitted_commit_is_seen_by_the_next_read_and_write(repo: stashdb.Repo) -> None:
    ns = {"x": list(range(10_000))}
    base = repo.commit("base", namespace=ns)
    futures = []
    for i in range(20):
        ns["x"].append(i)
        prepared = repo.prepare_changes(base, {"x"}, f"step {i}", namespace=ns, branch="main")
        assert prepared is not None
        futures.append(repo.submit(prepared))  # values may change at once: detached
        base = prepared  # type: ignore[assignment]
    repo.tag("after-steps")  # a write: queued behind the submitted ones
    assert [c.message for c in repo.log()][:2] == ["step 19", "step 18"]  # a read: sees them
    assert [f.result().message for f in futures] == [f"step {i}" for i in range(20)]
    assert repo.at("after-steps")["x"] == [*range(10_000), *range(20)]
    assert repo.at("HEAD~19")["x"] == [*range(10_000), 0]


HOLD_SQLITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute(f"BEGIN {sys.argv[3]}")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def _hold_exclusive(
    db: Path, seconds: float, tmp_path: Path, how: str = "EXCLUSIVE"
) -> subprocess.Popen[str]:
    """Another process holds the file locked: EXCLUSIVE (no reads either) or IMMEDIATE."""
    script = tmp_path / "hold_sqlite_lock.py"
    script.write_text(HOLD_SQLITE_LOCK)
    holder = subprocess.Popen([sys.executable, str(script), str(db), str(seconds), how],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_opening_the_engine_waits_for_the_lock_as_long_as_lock_timeout(tmp_path: Path) -> None:
    # pysqlite waits 5 s by itself; the store's own wait is what counts.
    repo = stashdb.init(tmp_path)
    repo.commit(namespace={"x": 1})
    stashdb.close_all()
    light = stashdb.open(tmp_path, lock_timeout=30)  # read light: the engine is not made yet
    holder = _hold_exclusive(tmp_path / ".stashdb" / "stash.db", 7, tmp_path)
    try:
        start = time.monotonic()
        light.tag("after-the-lock")  # makes the engine, then writes
        assert time.monotonic() - start >= 6
    finally:
        holder.wait()
    assert [t.name for t in light.tags()] == ["after-the-lock"]


def test_ctrl_c_during_a_write_rolls_it_back(tmp_path: Path) -> None:
    code = """
        import signal, stashdb, sys, threading, time
        repo = stashdb.open(sys.argv[1], lock_timeout=60)
        threading.Timer(1.0, lambda: signal.raise_signal(signal.SIGINT)).start()
        try:
            repo.tag("blocked")  # waits for the lock another process holds
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """
    repo = stashdb.init(tmp_path)
    repo.commit(namespace={"x": 1})
    stashdb.close_all()
    script = tmp_path / "interrupt.py"
    script.write_text(textwrap.dedent(code))
    # SQLite waits for a lock in C: Ctrl-C takes effect when the wait ends (at 4 s),
    # inside the write transaction, which must then roll back.
    holder = _hold_exclusive(tmp_path / ".stashdb" / "stash.db", 4, tmp_path, "IMMEDIATE")
    try:
        done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                              text=True, timeout=60)
    finally:
        holder.wait()
    assert done.stdout.strip() == "interrupted", done.stderr
    assert stashdb.open(tmp_path).tags() == []  # nothing was written behind the user's back


def test_a_commit_from_an_atexit_handler_is_written(tmp_path: Path) -> None:
    run_python(
        """
        import atexit, stashdb
        repo = stashdb.init(".")
        repo.commit("first", namespace={"x": 1})
        final = {"x": 2}
        atexit.register(lambda: repo.commit("at exit", namespace=final))
        """,
        tmp_path,
    )
    assert [c.message for c in stashdb.open(tmp_path).log()] == ["at exit", "first"]


def test_a_fork_while_another_thread_reads_does_not_hang_the_child(repo: stashdb.Repo) -> None:
    import threading

    repo.commit(namespace={"x": 1})
    reading = threading.Event()
    release = threading.Event()

    def read_slowly() -> None:
        with repo.storage.reader.transaction():
            reading.set()
            release.wait(10)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    reading.wait(10)
    pid = os.fork()
    if pid == 0:
        import signal

        signal.alarm(20)  # a hang would be killed (and fail the test), not wait forever
        status = 0 if repo.head == "main" and repo.at()["x"] == 1 else 1
        os._exit(status)
    release.set()
    reader.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_migrate_takes_the_lock_timeout_too(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path)
    repo.commit(namespace={"x": 1})
    holder = _hold_the_write_lock(repo.url, tmp_path)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "stashdb", "migrate", "--lock-timeout", "0.5"], cwd=tmp_path,
            capture_output=True, text=True, timeout=60,
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode in (0, 1)
    assert done.returncode == 0 or "is locked" in done.stderr  # never a 300 s wait
