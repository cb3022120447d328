"""Sessions at their edges: hostile states, threads, cancellation, timeouts that end mid-way.

Each test here is a class of defect a review found (the review's scripts
became these tests): a state from elsewhere that names files outside the
working directory, a resume that cannot see the working directory, a fork
sharing one, callbacks raising BaseException or called from threads, a
timeout firing during the commit or during a callback, files a crashed
execution made, crafted bundles, a cancelled async execution, a session
closed while busy.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import xxhash
from test_session_cli import stashdb_cli

import stashdb
from stashdb.session.files import FILE
from stashdb.storage import bundle

# -- files from a state that is not ours ------------------------------------------------


def test_a_state_naming_files_outside_the_working_directory_writes_none_of_them(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / "target.txt"
    target.write_text("keep")
    work = tmp_path / "work"
    work.mkdir()
    (work / "out").symlink_to(outside)  # a directory here that leads out
    (work / "link.txt").symlink_to(target)  # a file here that is a link out
    hostile = {
        FILE + "../escape.txt": b"evil", FILE + str(tmp_path / "abs.txt"): b"evil",
        FILE + "out/planted.txt": b"evil", FILE + "a/./b": b"evil", FILE + "a//b": b"evil",
        FILE + "link.txt": b"replaced", FILE + "fine/ok.txt": b"fine",
    }
    repo = stashdb.init(tmp_path / "store")
    repo.commit(namespace=hostile, branch="hostile", message="from elsewhere")
    with stashdb.Session.resume("hostile", repo=repo, workdir=work) as s:
        warnings = s.execute("x = 1").warnings
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "abs.txt").exists()
    assert not (outside / "planted.txt").exists() and target.read_text() == "keep"
    assert (work / "fine" / "ok.txt").read_bytes() == b"fine"
    assert not (work / "link.txt").is_symlink()  # the link was replaced, not written through
    assert (work / "link.txt").read_bytes() == b"replaced"
    said = " ".join(warnings)
    for name in ("../escape.txt", "out/planted.txt", "a/./b", "a//b"):
        assert f"file {name} was not restored" in said


def test_going_back_never_removes_a_file_outside_the_working_directory(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    repo = stashdb.init(tmp_path / "store")
    first = repo.commit(namespace={FILE + "../victim.txt": b"x"}, branch="b", message="one")
    repo.commit(namespace={"y": 1}, branch="b", message="two")  # the file "went"
    work = tmp_path / "work"
    work.mkdir()
    with stashdb.Session.resume("b", repo=repo, workdir=work) as s:
        s.checkout(first.id)
        s.undo()  # from a state holding the name to one without it: a removal
    assert victim.read_text() == "mine"


# -- working directories: resume, fork, crash -------------------------------------------


def test_resume_where_the_working_directory_is_gone_keeps_the_files_in_the_state(
    tmp_path: Path,
) -> None:
    import shutil

    work = tmp_path / "work"
    with stashdb.Session(tmp_path / "store", branch="w", workdir=work) as s:
        s.execute("open('notes.txt', 'w').write('v1')")
    shutil.rmtree(work)
    with stashdb.Session.resume("w", repo=tmp_path / "store") as again:
        assert again.workdir is None
        r = again.execute("y = 2")
        assert any("no working directory" in w for w in r.warnings)
        names = again.show().names
    assert FILE + "notes.txt" in names and "y" in names  # carried, not dropped


def test_the_cli_resumes_a_session_in_its_working_directory(tmp_path: Path) -> None:
    work = tmp_path / "work"
    store = str(tmp_path / "store")
    first = stashdb_cli(tmp_path, "repl", "--branch", "w", "--store", store,
                        "--workdir", str(work), stdin="open('notes.txt', 'w').write('hi')\n")
    assert first.returncode == 0, first.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = stashdb_cli(elsewhere, "repl", "--branch", "w", "--store", store,
                        stdin="import os\nprint(os.getcwd())\nprint(open('notes.txt').read())\n")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[:2] == [str(work.resolve()), "hi"]


def test_a_fork_gets_its_own_working_directory_with_the_same_files(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with stashdb.Session(tmp_path / "store", workdir=work) as s:
        s.execute("open('a.txt', 'w').write('parent')")
        with pytest.raises(stashdb.InvalidArguments, match="cannot share"):
            s.fork(workdir=work)
        with s.fork() as child:
            assert child.workdir is not None and child.workdir != s.workdir
            assert Path(child.workdir, "a.txt").read_text() == "parent"
            child.execute("open('a.txt', 'w').write('child')\nopen('b.txt', 'w').write('b')")
        assert (work / "a.txt").read_text() == "parent" and not (work / "b.txt").exists()
        assert s.execute("open('a.txt').read()").value == "'parent'"


def test_files_a_crashed_execution_made_are_gone_after_the_recovery(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "found.txt").write_text("there before")
    with stashdb.Session(tmp_path / "store", workdir=work) as s:
        s.execute("open('kept.txt', 'w').write('k')")
        with pytest.raises(stashdb.WorkerCrashed):
            s.execute("open('half.txt', 'w').write('h')\nopen('kept.txt', 'w').write('bad')\n"
                      "import os\nos._exit(1)")
        assert sorted(os.listdir(work)) == ["found.txt", "kept.txt"]
        assert (work / "kept.txt").read_text() == "k"
        assert (work / "found.txt").read_text() == "there before"
        found = s.show(s.log()[-2].id)  # after the empty start: the directory as the session found it
        assert FILE + "found.txt" in found.names
        s.checkout(found.id)
        assert sorted(os.listdir(work)) == ["found.txt"]


def test_going_back_removes_files_made_since_the_last_snapshot(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with stashdb.Session(tmp_path / "store", workdir=work, autocommit=False) as s:
        s.execute("open('a.txt', 'w').write('a')")
        kept = s.commit("a")
        s.execute("open('unsaved.txt', 'w').write('u')")  # not committed
        s.checkout(kept.id)
        assert not (work / "unsaved.txt").exists() and (work / "a.txt").exists()


# -- callbacks ---------------------------------------------------------------------------


def test_a_callback_raising_baseexception_is_the_codes_exception(tmp_path: Path) -> None:
    def leave() -> None:
        raise SystemExit(3)

    def stop() -> None:
        raise GeneratorExit("odd")

    with stashdb.Session(tmp_path, callbacks={"leave": leave, "stop": stop}) as s:
        pid = s.pid
        r = s.execute("leave()")
        assert not r.ok and r.error is not None and r.error.type == "SystemExit"
        r = s.execute("try:\n    stop()\nexcept GeneratorExit as e:\n    got = str(e)\ngot")
        assert r.value == "'odd'"
        assert s.pid == pid and s.execute("1 + 1").value == "2"  # the same worker


def test_callbacks_called_from_threads_each_get_their_own_answer(tmp_path: Path) -> None:
    def square(n: int) -> int:
        time.sleep(0.001)
        return n * n

    code = """
import threading
got = {}
def ask(i):
    for j in range(20):
        got[(i, j)] = square(i * 100 + j)
threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
all(v == (i * 100 + j) ** 2 for (i, j), v in got.items()) and len(got)
"""
    for isolated in (True, False):
        with stashdb.Session(tmp_path / str(isolated), isolated=isolated,
                             callbacks={"square": square}) as s:
            assert s.execute(code).value == "160"


def test_a_callback_called_between_executions_is_refused(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, callbacks={"ping": lambda: "pong"}) as s:
        s.execute("""
import threading, time
seen = []
def later():
    time.sleep(0.5)
    try:
        seen.append(ping())
    except Exception as exc:
        seen.append(type(exc).__name__)
threading.Thread(target=later, daemon=True).start()
""")
        time.sleep(1.0)
        assert s.execute("seen").value == "['CallbackError']"
        assert s.execute("ping()").value == "'pong'"  # and during one, still fine


def test_a_timeout_stops_code_waiting_on_a_slow_callback(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, callbacks={"slow": lambda: time.sleep(10)}) as s:
        s.execute("n = 1")
        started = time.monotonic()
        with pytest.raises(stashdb.ExecutionTimeout):
            s.execute("n = 2\nslow()", timeout=0.5)
        assert time.monotonic() - started < 5
        assert s.execute("n").value == "1"


# -- timeouts count the code, not the commit -------------------------------------------

SLOW_TO_STORE = """
import time
class SlowToStore:
    def __reduce__(self):
        time.sleep(1.2)
        return (SlowToStore, ())
v = SlowToStore()
"""


@pytest.mark.parametrize("isolated", [True, False])
def test_a_timeout_never_fires_during_the_commit(tmp_path: Path, isolated: bool) -> None:
    with stashdb.Session(tmp_path, isolated=isolated) as s:
        r = s.execute(SLOW_TO_STORE, timeout=0.5)  # the code is quick; the commit is not
        assert r.ok and "v" in s.show().names
        with pytest.raises(stashdb.ExecutionTimeout):
            s.execute("while True: pass", timeout=0.5)  # and the code is still timed


# -- bundles that a stashdb did not write ------------------------------------------------


def _records(blob: bytes) -> list[tuple[bytes, bytes]]:
    at, found = len(bundle.MAGIC) + 1, []
    while at < len(blob):
        kind, length = struct.unpack_from("<cQ", blob, at)
        found.append((kind, blob[at + 9 : at + 9 + length]))
        at += 9 + length
    return found


def _forge(records: list[tuple[bytes, bytes]]) -> bytes:
    """A bundle of ``records`` with a digest that holds (anyone can compute one)."""
    body = bundle.MAGIC + bytes([bundle.VERSION]) + b"".join(
        struct.pack("<cQ", kind, len(payload)) + payload for kind, payload in records
        if kind != b"E")
    return body + struct.pack("<cQ", b"E", 16) + xxhash.xxh3_128_digest(body)


def _edit_json(records: list[tuple[bytes, bytes]], kind: bytes, change: Any) -> list[Any]:
    out = []
    for k, payload in records:
        if k == kind:
            data = json.loads(payload)
            change(data)
            payload = json.dumps(data).encode()
        out.append((k, payload))
    return out


def _crafted(records: list[tuple[bytes, bytes]]) -> dict[str, bytes]:
    import zstandard

    def more_parts(objects: list[Any]) -> None:
        objects[0]["parts"] = 10**9

    def other_size(objects: list[Any]) -> None:
        objects[0]["layout"][0][3] += 1

    def no_layout(objects: list[Any]) -> None:
        objects[0]["layout"] = "not a list"

    bomb = zstandard.ZstdCompressor().compress(bytes(64 * 1024 * 1024))
    chunk = next(r for r in records if r[0] == b"C")
    bomb_record = (b"C", chunk[1][:16] + struct.pack("<BQ", 1, 1024) + bomb)
    return {
        "header kind": _forge(_edit_json(records, b"H", lambda h: h.update(kind="other"))),
        "no commits": _forge(_edit_json(records, b"H", lambda h: h.pop("commits"))),
        "parts": _forge(_edit_json(records, b"O", more_parts)),
        "layout size": _forge(_edit_json(records, b"O", other_size)),
        "layout type": _forge(_edit_json(records, b"O", no_layout)),
        "order": _forge([records[1], records[0], *records[2:]]),
        "two headers": _forge([records[0], *records]),
        "not json": _forge([(b"H", b"\xff\xfe{"), *records[1:]]),
        "json list": _forge([(b"H", b"[1, 2]"), *records[1:]]),
        "codec": _forge([(b"C", chunk[1][:16] + b"\x07" + chunk[1][17:]) if r == chunk else r
                         for r in records]),
        "zstd bomb": _forge([bomb_record if r == chunk else r for r in records]),
        "unknown record": _forge([*records[:2], (b"Z", b"?"), *records[2:]]),
    }


def test_crafted_bundles_are_refused_with_bad_bundle_and_nothing_is_stored(
    tmp_path: Path,
) -> None:
    with stashdb.Session(tmp_path / "src") as s:
        s.execute("import random\nsecret = random.Random(1).randbytes(300_000)\nn = 5")
        records = _records(s.snapshot_state())
    assert _forge(records) and bundle.read_bundle(_forge(records))  # the forger is right
    crafted = _crafted(records)
    with stashdb.Session(tmp_path / "dst") as s:
        tip = s.head
        for blob in crafted.values():
            with pytest.raises(stashdb.BadBundle, match="nothing was restored"):
                s.restore_state(blob)
            assert s.head == tip
        assert s.show().names == []
    assert stashdb.open(tmp_path / "dst").verify().ok


def test_every_truncation_of_a_bundle_is_refused(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute("a = list(range(100))\nb = 'x' * 3000")
        blob = s.snapshot_state()
    for end in range(0, len(blob), max(1, len(blob) // 300)):
        with pytest.raises(stashdb.BadBundle):
            bundle.read_bundle(blob[:end])


# -- the asynchronous session, interrupting, closing -------------------------------------


def test_a_cancelled_async_execution_stops_the_code_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    async def main() -> list[Any]:
        async with stashdb.AsyncSession(tmp_path) as s:
            await s.execute("n = 1")
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(s.execute("n = 2\nwhile True: pass"), 0.5)
            waited = time.monotonic() - started
            after = await s.execute("n")  # interrupted: a failed run, its state kept
            return [waited < 5, after.value]

    assert asyncio.run(main()) == [True, "2"]


def test_interrupt_from_another_thread(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute("n = 1")
        pid = s.pid
        threading.Timer(0.5, s.interrupt).start()
        r = s.execute("n = 2\nwhile True: pass")
        assert not r.ok and r.error is not None and r.error.type == "KeyboardInterrupt"
        assert s.pid == pid  # the same worker: interrupting kills nothing
        threading.Timer(0.5, lambda: s.interrupt(kill=True)).start()
        with pytest.raises(stashdb.WorkerCrashed):
            s.execute("while True: pass")
        assert s.execute("n").value in ("1", "2")  # the failed run's state, or the one before


def test_close_from_another_thread_ends_a_busy_session(tmp_path: Path) -> None:
    s = stashdb.Session(tmp_path)
    s.execute("n = 1")
    pid = s.pid
    closer = threading.Timer(0.5, s.close)
    closer.start()
    started = time.monotonic()
    with pytest.raises(stashdb.SessionClosed):
        s.execute("while True: pass")
    closer.join(timeout=10)
    assert time.monotonic() - started < 10 and s.closed
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # type: ignore[arg-type]


def test_the_codes_own_memory_error_is_not_the_memory_limit(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, memory_limit="2GB") as s:
        r = s.execute("raise MemoryError('my own words')")
        assert not r.ok and r.error is not None
        assert (r.error.type, r.error.message) == ("MemoryError", "my own words")
