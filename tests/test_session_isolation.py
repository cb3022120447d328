"""What isolation gives: a timeout, a crash or the memory limit kills only the worker.

Real workers, real signals: ``while True: pass``, ``os._exit``, a segfault
through ``ctypes.string_at(0)``, an allocation past ``memory_limit``; and a
host killed with SIGKILL, whose workers must not outlive it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import stashdb

SETUP = "import json\nclass Box:\n    def __init__(self, v):\n        self.v = v\nbox = Box([1, 2])\nn = 7"
CHECK = "(n, box.v, json.dumps(n))"


def _back_at_last_state(s: stashdb.Session, before: str, error: stashdb.SessionError) -> None:
    """The error says where the session is; the state is the last successful one; it works."""
    assert error.restored_from == before
    assert f"commit {before[:8]}" in str(error)
    r = s.execute(CHECK)
    assert r.value == "(7, [1, 2], '7')"
    assert any(f"restored from commit {before[:8]}" in w for w in r.warnings)
    assert s.execute("n += 1\nn").value == "8"  # and it goes on


def test_timeout_kills_the_worker_and_the_state_comes_back(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, timeout=30) as s:
        s.execute(SETUP)
        before, pid = s.head, s.pid
        started = time.monotonic()
        with pytest.raises(stashdb.ExecutionTimeout) as caught:
            s.execute("n = 0\nwhile True: pass", timeout=0.5)
        assert time.monotonic() - started < 5
        assert isinstance(caught.value, TimeoutError) and caught.value.seconds == 0.5
        assert s.pid != pid
        _back_at_last_state(s, before, caught.value)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # type: ignore[arg-type]


def test_os_exit_is_a_crash_with_its_exit_code(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute(SETUP)
        before = s.head
        with pytest.raises(stashdb.WorkerCrashed) as caught:
            s.execute("n = 0\nimport os\nos._exit(3)")
        assert (caught.value.exit_code, caught.value.signal) == (3, None)
        assert "exited with status 3" in str(caught.value)
        _back_at_last_state(s, before, caught.value)


def test_a_segfault_is_a_crash_with_its_signal(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        s.execute(SETUP)
        before = s.head
        with pytest.raises(stashdb.WorkerCrashed) as caught:
            s.execute("import ctypes\nctypes.string_at(0)")
        assert (caught.value.exit_code, caught.value.signal) == (None, signal.SIGSEGV)
        _back_at_last_state(s, before, caught.value)


def test_the_memory_limit_kills_only_the_worker(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path, memory_limit="300MB") as s:
        s.execute(SETUP)
        assert s.execute("small = bytearray(50_000_000)\nlen(small)").ok  # within the limit
        before = s.head
        with pytest.raises(stashdb.MemoryLimitExceeded) as caught:
            s.execute("n = 0\nhuge = bytearray(600_000_000)")
        assert caught.value.limit == 300_000_000
        _back_at_last_state(s, before, caught.value)
        assert s.execute("len(small)").value == "50000000"


def test_a_memory_error_without_a_limit_is_the_codes_own(tmp_path: Path) -> None:
    with stashdb.Session(tmp_path) as s:
        r = s.execute("raise MemoryError('pretend')")
        assert not r.ok and r.error is not None and r.error.type == "MemoryError"


def test_no_worker_outlives_a_host_killed_with_sigkill(tmp_path: Path) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, sys, time, stashdb
            s = stashdb.Session({str(tmp_path)!r})
            s.execute("x = 1")
            busy = stashdb.Session({str(tmp_path)!r})
            import threading
            threading.Thread(target=busy.execute, args=("while True: pass",),
                             daemon=True).start()
            print(s.pid, busy.pid, flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    assert host.stdout is not None
    pids = [int(p) for p in host.stdout.readline().split()]
    for pid in pids:
        os.kill(pid, 0)  # both alive
    host.kill()
    host.wait()
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        time.sleep(0.05)
    assert alive == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its parent to reap it is gone for every purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_ctrl_c_in_the_host_interrupts_the_code_and_keeps_the_session(tmp_path: Path) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import json, time, stashdb
            with stashdb.Session({str(tmp_path)!r}) as s:
                s.execute("x = 1")
                print("ready", flush=True)
                try:
                    s.execute("import time\\nx = 2\\ntime.sleep(30)")
                except KeyboardInterrupt:
                    print(json.dumps(s.execute("x").value), flush=True)
        """)],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    assert host.stdout is not None
    assert host.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    host.send_signal(signal.SIGINT)
    out, _ = host.communicate(timeout=30)
    # The code saw KeyboardInterrupt where it was; its state is what it left (x = 2).
    assert out.strip() == '"2"' and host.returncode == 0
