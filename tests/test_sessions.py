"""Sessions: state that persists, commits per execution, time travel, bundles, callbacks, files.

Real worker processes (forked by the real fork server), real stores, and
fresh interpreters for everything said to work "in another process".
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import pytest

import stashdb
from conftest import last_json, postgres_schema, postgres_url, run_python
from stashdb.session.files import FILE

KINDS = """
import json, collections
x = 42
name = "stashdb"
def double(v):
    return v * 2
square = lambda v: v * v
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2
"""
USES = "p = Point(3, 4)\ncounts = collections.Counter('abca')"
CHECK = "(x, name, double(4), square(5), p.norm2(), type(p).__name__, counts['a'], json.dumps([1]))"
EXPECTED = "(42, 'stashdb', 8, 25, 25, 'Point', 2, '[1]')"


def test_state_persists_across_executions(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        first = s.execute("x = 42")
        printed = s.execute("print(x)")
        assert (first.ok, printed.stdout, s.execution_count) == (True, "42\n", 2)
        assert s.execute(KINDS).ok and s.execute(USES).ok
        assert s.execute(CHECK).value == EXPECTED
        assert s.branch.startswith("session/") and len(s.branch) == len("session/") + 8


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_resume_in_a_fresh_interpreter_sees_the_same_state(tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        _resume_from_second_process(tmp_path, str(tmp_path / "store"))
    else:
        with postgres_schema(postgres_url()) as url:
            stashdb.init(url)
            _resume_from_second_process(tmp_path, url)


def _resume_from_second_process(tmp_path: Path, store: str) -> None:
    with stashdb.Session(store, branch="agent/task-1") as s:
        s.execute(KINDS)
        s.execute(USES)
        count = s.execution_count
    result = run_python(f"""
        import json, stashdb
        with stashdb.Session.resume("agent/task-1", repo={store!r}) as s:
            r = s.execute({CHECK!r})
            print(json.dumps([r.value, r.execution_count, s.branch]))
    """, tmp_path)
    assert last_json(result) == [EXPECTED, count + 1, "agent/task-1"]


def test_resume_of_a_branch_that_does_not_exist_says_so(tmp_path: Path) -> None:
    stashdb.init(tmp_path)
    with pytest.raises(stashdb.RefNotFound, match="nope"):
        stashdb.Session.resume("nope", repo=tmp_path)


def test_a_failed_execution_keeps_what_the_code_left_and_undo_goes_back(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute("items = [1]")
        r = s.execute("items.append(2)\nbroken = True\n1 / 0")
        assert not r.ok and r.commit is None
        assert r.error is not None and r.error.type == "ZeroDivisionError"
        assert r.error.message == "division by zero"
        assert '<execution 2>", line 3' in r.error.traceback and "1 / 0" in r.error.traceback
        assert "stashdb" not in r.error.traceback.split("\n", 2)[1]  # our frames left out
        with pytest.raises(stashdb.ExecutionFailed, match="ZeroDivisionError: division by zero"):
            r.raise_for_error()
        assert s.execute("items, broken").value == "([1, 2], True)"  # as the code left it
        s.undo()  # back to before the failed execution (and the one that looked)
        s.undo()
        assert s.execute("items").value == "[1]"
        assert not s.execute("broken").ok


def test_syntax_errors_are_results_too(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        r = s.execute("def f(:\n  pass")
        assert not r.ok and r.error is not None and r.error.type == "SyntaxError"
        assert "def f(:" in r.error.traceback


def test_every_successful_execution_is_a_durable_incremental_commit(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, branch="steps") as s:
        s.execute("big = list(range(100_000))")
        r = s.execute("small = 1")
        commit = s.show()
        assert r.commit == commit.id == s.head
        assert commit.stored == ["small"] and "big" in commit.reused  # big not pickled again
        same = s.execute("small")  # reads only: no commit
        assert same.commit == r.commit
        assert [c.message for c in s.log()] == ["[2] small = 1", "[1] big = list(range(100_000))",
                                               "session started"]
        # Durable when execute returned: another process sees it at once.
        seen = run_python(f"""
            import json, stashdb
            print(json.dumps(stashdb.open({str(tmp_path)!r}).show("steps").id))
        """, tmp_path)
        assert last_json(seen) == r.commit


def test_autocommit_off_commits_when_asked(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, autocommit=False) as s:
        r = s.execute("a = 1")
        assert r.ok and r.commit is None and s.show().names == []
        made = s.commit("by hand")
        assert made.names == ["a"] and made.message == "by hand" and s.head == made.id


def test_unstorable_values_are_reported_once_and_said_lost_after_a_crash(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        r = s.execute("import socket\nsock = socket.socket()\ngen = (i for i in range(3))\nok = 1")
        assert r.ok
        assert any("sock" in w and "not stored" in w for w in r.warnings)
        assert any("gen" in w for w in r.warnings)
        assert {x.name for x in s.show().skipped} == {"gen", "sock"}
        assert s.execute("ok = 2").warnings == []  # once, not at every step
        assert s.execute("sock.fileno() > 0").value == "True"  # still live
        with pytest.raises(stashdb.WorkerCrashed):
            s.execute("import os; os._exit(1)")
        after = s.execute("ok")
        assert after.value == "2"
        assert any("gen (generator)" in w and "sock (socket.socket)" in w
                   for w in after.warnings)
        assert not s.execute("sock").ok


def test_clear_state_keeps_the_interpreter_reset_starts_a_new_one(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute("import colorsys\nx = 1")
        pid = s.pid
        cleared = s.clear_state()
        assert cleared.names == [] and s.head == cleared.id
        assert s.pid == pid  # same worker
        assert not s.execute("x").ok
        assert s.execute("import sys; 'colorsys' in sys.modules").value == "True"
        count = s.execution_count
        reset = s.reset()
        assert s.pid != pid and s.execution_count == 0 and reset.names == []
        assert s.execute("import sys; 'colorsys' in sys.modules").value == "False"
        assert s.execution_count == 1 and count == 3


def test_checkout_and_undo_move_the_branch(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, branch="tt") as s:
        s.execute("v = 1")
        s.execute("v = 2")
        s.execute("w = 3")
        first = s.log()[-2]  # [1] v = 1
        back = s.checkout(first.id[:8])
        assert s.execute("v, 'w' in dir()").value == "(1, False)"
        assert stashdb.open(tmp_path).show("tt").id == back.id == s.head
        s.undo()  # before the checkout
        assert s.execute("v, w").value == "(2, 3)"
        with stashdb.Session.resume("tt", repo=tmp_path) as again:
            assert again.execute("v, w").value == "(2, 3)"


def test_undo_with_nothing_to_undo(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s, pytest.raises(stashdb.NothingToUndo):
        s.undo()


def test_closed_sessions_refuse_and_say_how_to_resume(tmp_path: Path) -> None:
    s = stashdb.Session(tmp_path, branch="done")
    s.close()
    s.close()  # twice is fine
    with pytest.raises(stashdb.SessionClosed, match=r"Session.resume\('done'\)"):
        s.execute("1")


def test_history_of_a_variable(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        for i in range(3):
            s.execute(f"n = {i}")
        assert [v.entry.literal for v in s.history("n")] == ["2", "1", "0"]


def test_fork_shares_every_unchanged_object(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute("data = bytes(2_000_000)\nx = 1")
        before = stashdb.open(tmp_path).stats()
        with s.fork(branch="try-2") as f:
            assert f.branch == "try-2" and f.execution_count == s.execution_count
            f.execute("x = 2")
            assert f.show().entry("data").object_id == s.show().entry("data").object_id
            assert s.execute("x").value == "1" and f.execute("x").value == "2"
        after = stashdb.open(tmp_path).stats()
        assert after.stored_bytes - before.stored_bytes < 1000  # `x = 2`, not 2 MB again


# -- bundles ----------------------------------------------------------------------------


def test_snapshot_state_restores_in_a_fresh_interpreter_and_another_store(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path / "a") as s:
        s.execute(KINDS)
        s.execute(USES)
        blob = s.snapshot_state()
    assert isinstance(blob, bytes) and blob.startswith(b"STASHDB-BUNDLE\n")
    (tmp_path / "state.bin").write_bytes(blob)
    result = run_python(f"""
        import json, pathlib, stashdb
        blob = pathlib.Path({str(tmp_path / "state.bin")!r}).read_bytes()
        with stashdb.Session({str(tmp_path / "b")!r}) as s2:
            s2.restore_state(blob)
            r = s2.execute({CHECK!r})
            again = stashdb.open({str(tmp_path / "b")!r}).stats().stored_bytes
            s2.restore_state(blob)  # what the store has is not written again
            print(json.dumps([r.value, stashdb.open({str(tmp_path / "b")!r}).stats().stored_bytes
                              - again]))
    """, tmp_path)
    assert last_json(result) == [EXPECTED, 0]


def test_restore_state_replaces_the_namespace(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute("a = 1")
        blob = s.snapshot_state()
        s.execute("a = 2\nb = 3")
        s.restore_state(blob)
        assert s.execute("a, 'b' in dir()").value == "(1, False)"
        assert s.show().message == "restore_state"


def _planted_blob(tmp_path: Path) -> bytes:
    """A state whose unpickling would write ``tmp_path/ran``."""
    marker = tmp_path / "ran"
    with stashdb.Session(tmp_path / "src") as s:
        s.execute(f"""
class Payload:
    def __reduce__(self):
        return (open, ({str(marker)!r}, "w"))
payload = Payload()
""")
        return s.snapshot_state()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not a bundle", "newer version"])
def test_a_damaged_blob_is_refused_before_anything_is_unpickled(tmp_path: Path, damage: str) -> None:
    blob = _planted_blob(tmp_path)
    marker = tmp_path / "ran"
    marker.unlink(missing_ok=True)
    bad = {
        "truncated": blob[: len(blob) - 7],
        "flipped": blob[:200] + bytes([blob[200] ^ 1]) + blob[201:],
        "not a bundle": b"PK\x03\x04" + blob[4:],
        "newer version": blob[:15] + bytes([9]) + blob[16:],
    }[damage]
    with stashdb.Session(tmp_path / "dst") as s:
        tip = s.head
        with pytest.raises(stashdb.BadBundle, match="nothing was restored"):
            s.restore_state(bad)
        assert s.head == tip and s.log()[0].id == tip
    assert not marker.exists()


def test_a_blob_with_a_valid_digest_but_a_lying_chunk_is_refused(tmp_path: Path) -> None:
    import random

    import xxhash

    from stashdb.storage import bundle

    secret = random.Random(1).randbytes(5000)  # incompressible: stored as it is
    with stashdb.Session(tmp_path / "src") as s:
        s.execute("import random\nsecret = random.Random(1).randbytes(5000)")
        blob = bytearray(s.snapshot_state())
    at = blob.find(secret[1000:1100])
    assert at > 0
    blob[at : at + 4] = b"EVIL"
    body = bytes(blob[: -(9 + 16)])  # everything up to the trailer record
    forged = body + bytes(blob[-(9 + 16) : -16]) + xxhash.xxh3_128_digest(body)
    with pytest.raises(stashdb.BadBundle, match="is not what its id says"):
        bundle.read_bundle(forged)


# -- callbacks --------------------------------------------------------------------------


def test_callbacks_sync_await_and_exceptions(tmp_path: Path) -> None:
    seen: list[int] = []

    def increment(n: int) -> int:
        seen.append(n)
        return n + 1

    async def fetch(url: str) -> str:
        await asyncio.sleep(0)
        return f"fetched {url}"

    def refuse() -> None:
        raise PermissionError("not allowed here")

    def unsendable() -> None:
        error = RuntimeError("odd")
        error.sock = socket.socket()  # type: ignore[attr-defined]  # cannot be pickled
        raise error

    callbacks = [
        {"name": "increment", "fn": increment, "description": "adds one"},
        {"name": "fetch", "fn": fetch},
        {"name": "refuse", "fn": refuse},
        {"name": "unsendable", "fn": unsendable},
    ]
    with stashdb.Session(tmp_path, callbacks=callbacks) as s:
        assert s.execute("a = increment(1)\nb = await increment(a)\n(a, b)").value == "(2, 3)"
        assert s.execute("await fetch('x')").value == "'fetched x'"
        assert s.execute("async def twice(n):\n  return await increment(await increment(n))\n"
                         "await twice(10)").value == "12"
        r = s.execute("try:\n  refuse()\nexcept PermissionError as e:\n  caught = str(e)\ncaught")
        assert r.value == "'not allowed here'"
        odd = s.execute("unsendable()")
        assert odd.error is not None and odd.error.type == "CallbackError"
        assert "RuntimeError: odd" in odd.error.message
        assert seen == [1, 2, 10, 11]
        assert "increment" not in s.show().names  # never stored
        assert s.execute("increment.__doc__").value == "'adds one'"


def test_callbacks_in_the_mapping_form_are_bound_again_after_a_restore(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, callbacks={"host_pid": os.getpid}) as s:
        s.execute("f = host_pid\nmine = f()")
        assert s.execute("mine").value == str(os.getpid())
        with pytest.raises(stashdb.WorkerCrashed):
            s.execute("import os; os._exit(0)")
        assert s.execute("f()").value == str(os.getpid())  # the name stored, bound again


def test_bad_callbacks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(stashdb.InvalidArguments, match="not a Python identifier"):
        stashdb.Session(tmp_path, callbacks={"no good": print})
    with pytest.raises(stashdb.InvalidArguments, match="not callable"):
        stashdb.Session(tmp_path, callbacks=[{"name": "x", "fn": 3}])


# -- files ------------------------------------------------------------------------------


def test_files_are_part_of_the_state(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with stashdb.Session(tmp_path / "store", workdir=work, branch="files") as s:
        s.execute("open('notes.txt', 'w').write('v1')\nimport os\nos.makedirs('out', exist_ok=True)\n"
                  "open('out/data.bin', 'wb').write(bytes(1000))")
        first = s.show()
        assert {FILE + "notes.txt", FILE + "out/data.bin"} <= set(first.names)
        s.execute("x = 1")  # files untouched: their entries are carried, not stored again
        assert all(s.show().entry(n).status == "reused" for n in (FILE + "notes.txt",))
        s.execute("open('notes.txt', 'w').write('v2')\nopen('new.txt', 'w').write('n')")
        s.checkout(first.id)
        assert (work / "notes.txt").read_text() == "v1" and not (work / "new.txt").exists()
        s.undo()
        assert (work / "notes.txt").read_text() == "v2" and (work / "new.txt").exists()
        blob = s.snapshot_state()
    other = tmp_path / "elsewhere"
    with stashdb.Session(tmp_path / "store2", workdir=other) as s2:
        s2.restore_state(blob)
        assert (other / "notes.txt").read_text() == "v2"
        assert (other / "out" / "data.bin").read_bytes() == bytes(1000)
    (work / "notes.txt").write_text("changed while closed")
    with stashdb.Session.resume("files", repo=tmp_path / "store") as again:
        assert again.workdir == str(work.resolve())
        assert (work / "notes.txt").read_text() == "v2"  # the state's, brought back


def test_file_limits_and_ignored_patterns(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with stashdb.Session(tmp_path / "store", workdir=work, max_file_size="1KB",
                         ignore=["*.log", "cache"]) as s:
        r = s.execute("open('big.bin', 'wb').write(bytes(5000))\nopen('run.log', 'w').write('x')\n"
                      "import os; os.makedirs('cache', exist_ok=True)\n"
                      "open('cache/c', 'w').write('x')\nopen('ok.txt', 'w').write('fine')")
        names = s.show().names
        assert FILE + "ok.txt" in names and FILE + "run.log" not in names
        assert FILE + "cache/c" not in names
        skipped = {x.name: x.reason for x in s.show().skipped}
        assert "max_file_size" in (skipped[FILE + "big.bin"] or "")
        assert any("big.bin" in w for w in r.warnings)


# -- concurrency, async, in-process ------------------------------------------------------


def test_four_sessions_from_four_processes_on_one_store(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    stashdb.init(store)
    script = tmp_path / "one.py"
    script.write_text(f"""
import json, sys, stashdb
n = sys.argv[1]
with stashdb.Session({store!r}, branch=f"worker-{{n}}") as s:
    for i in range(25):
        s.execute(f"total = {{i}} * 10 + {{n}}")
    print(json.dumps(s.execute("total").value))
""")
    import subprocess

    procs = [subprocess.Popen([sys.executable, str(script), str(n)], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    assert [json.loads(o.strip().splitlines()[-1]) for o in outputs] == [
        str(240 + n) for n in range(4)]
    repo = stashdb.open(store)
    for n in range(4):
        assert len(repo.log(branch=f"worker-{n}")) == 26  # 25 steps + the start
    assert repo.verify().ok


def test_async_session(tmp_path: Path) -> None:
    async def lookup(key: str) -> str:
        await asyncio.sleep(0.01)
        return key.upper()

    async def main() -> list[object]:
        s = stashdb.AsyncSession(tmp_path, callbacks={"lookup": lookup})
        assert s.branch.startswith("session/")  # known before any await
        async with s:
            r = await s.execute("v = await lookup('k')\nv")
            blob = await s.snapshot_state()
            await s.execute("v = 'other'")
            await s.undo()
            after = await s.execute("v")
            log = await s.log()
        other = stashdb.AsyncSession(tmp_path)
        await other.restore_state(blob)
        restored = await other.execute("v")
        await other.close()
        return [r.value, after.value, len(log), restored.value]

    assert asyncio.run(main()) == ["'K'", "'K'", 4, "'K'"]


def test_in_process_sessions(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, isolated=False, callbacks={"pid": os.getpid}) as s:
        assert s.pid is None
        r = s.execute("print('hi')\nmine = pid()\nmine")
        assert (r.stdout, r.value) == ("hi\n", str(os.getpid()))
        with pytest.raises(stashdb.ExecutionTimeout):
            s.execute("while True: pass", timeout=0.3)
        assert s.execute("mine").value == str(os.getpid())
    with pytest.raises(stashdb.InvalidArguments, match="memory_limit needs isolated=True"):
        stashdb.Session(tmp_path, isolated=False, memory_limit="1GB")


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(stashdb.InvalidArguments, match="not a size"):
        stashdb.Session(tmp_path, memory_limit="lots")
    with pytest.raises(stashdb.InvalidArguments, match="more than 0 seconds"):
        stashdb.Session(tmp_path, timeout=0)
    repo = stashdb.init(tmp_path)
    repo.commit(namespace={"a": 1})
    repo.tag("v1")
    with pytest.raises(stashdb.NotABranch):
        stashdb.Session(tmp_path, branch="v1")


def test_output_of_c_code_and_child_processes_is_caught_in_order(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        r = s.execute("import os, sys\nprint('a')\nos.system('echo b')\nprint('c')\n"
                      "sys.stderr.write('e\\n')")
        assert r.stdout == "a\nb\nc\n" and r.stderr == "e\n"
        assert s.execute("print('next')").stdout == "next\n"  # nothing left over


def test_session_list_sees_sessions_with_any_branch_name(tmp_path: Path) -> None:
    from stashdb.session import catalog

    with stashdb.Session(tmp_path, branch="custom-name") as s:
        s.execute("a = 1")
    records = catalog.records(stashdb.open(tmp_path))
    assert [r.branch for r in records] == ["custom-name"]
    assert records[0].host == socket.gethostname()
