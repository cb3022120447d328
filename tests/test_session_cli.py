"""``stashdb repl`` and ``stashdb session list|show|log|resume``, as real processes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import stashdb
from stashdb.cli.repl import Command, steps_of

SCRIPT = """\
import math
def area(r):
    return math.pi * r ** 2

@staticmethod
def decorated():
    return 1
x = 41 + 1
print(round(area(1), 2))
y = [1, 2]
:undo
print('y' in dir())
x
"""


def stashdb_cli(
    cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("STASHDB_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "stashdb", *args], cwd=cwd, input=stdin, capture_output=True,
        text=True, env=env, timeout=120,
    )


def test_piped_statements_are_one_step_each() -> None:
    steps = steps_of(SCRIPT)
    assert steps[:3] == ["import math", "def area(r):\n    return math.pi * r ** 2",
                         "@staticmethod\ndef decorated():\n    return 1"]
    assert Command("undo") in steps and steps[-1] == "x"


def test_piped_input_splits_where_a_reader_would() -> None:
    assert steps_of("n = 1; print(n)\nx = 2\n") == ["n = 1; print(n)", "x = 2"]
    inside = steps_of('s = """\n:undo\n"""\nprint(s)\n:undo\n')  # a string, then a command
    assert inside == ['s = """\n:undo\n"""', "print(s)", Command("undo")]
    # A syntax error: the statements before it are steps; the rest is one (it fails alone).
    assert steps_of("a = 1\nb = 2 +\nc = 3\n") == ["a = 1", "b = 2 +\nc = 3"]


def test_repl_on_piped_input_snapshots_every_statement(tmp_path: Path) -> None:
    done = stashdb_cli(tmp_path, "repl", "--branch", "try-1", stdin=SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "3.14"
    assert "undo: back to" in done.stdout and "False\n42\n" in done.stdout  # :undo took y away
    assert "stashdb session resume try-1" in done.stderr
    messages = [c.message for c in stashdb.open(tmp_path).log(branch="try-1")]
    assert messages[-1] == "session started"
    assert "[6] y = [1, 2]" in messages and messages[0].startswith("undo: back to ")
    again = stashdb_cli(tmp_path, "repl", "--branch", "try-1", stdin="x, round(area(2))\n")
    assert again.stdout == "(42, 13)\n"  # --branch resumed it


def test_repl_reports_errors_and_exits_1_when_a_piped_step_failed(tmp_path: Path) -> None:
    done = stashdb_cli(tmp_path, "repl", stdin="a = 1\n1/0\nprint(a)\n")
    assert done.returncode == 1
    assert "ZeroDivisionError" in done.stderr and done.stdout == "1\n"


def test_repl_survives_a_crash(tmp_path: Path) -> None:
    done = stashdb_cli(tmp_path, "repl", stdin="a = 5\nimport os\nos._exit(9)\nprint(a)\n")
    assert "exited with status 9" in done.stderr and done.stdout == "5\n"


def test_session_list_show_log_and_resume(tmp_path: Path) -> None:
    stashdb_cli(tmp_path, "repl", "--branch", "exp/a", stdin="alpha = 1\nbeta = 'two'\n")
    with stashdb.Session(tmp_path, branch="exp/b") as s:
        s.execute("gamma = 3.0")
    listed = stashdb_cli(tmp_path, "session", "list")
    assert listed.returncode == 0
    assert "exp/a" in listed.stdout and "exp/b" in listed.stdout
    as_json = json.loads(stashdb_cli(tmp_path, "session", "list", "--json").stdout)
    assert [(s["branch"], s["executions"]) for s in as_json] == [("exp/a", 2), ("exp/b", 1)]
    assert as_json[0]["last_step"] == "[2] beta = 'two'"
    shown = stashdb_cli(tmp_path, "session", "show", "exp/a")
    assert "alpha" in shown.stdout and "'two'" in shown.stdout and "2 executions" in shown.stdout
    log = stashdb_cli(tmp_path, "session", "log", "exp/a")
    assert "[1] alpha = 1" in log.stdout and "session started" in log.stdout
    resumed = stashdb_cli(tmp_path, "session", "resume", "exp/b", stdin="print(gamma * 2)\n")
    assert resumed.stdout == "6.0\n"
    missing = stashdb_cli(tmp_path, "session", "resume", "exp/none")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "stashdb: error: no branch named 'exp/none'"


def test_repl_at_a_terminal(tmp_path: Path) -> None:
    main, child = pty.openpty()
    env = {**os.environ, "TERM": "dumb", "COLUMNS": "100"}
    env.pop("STASHDB_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stashdb", "repl", "--branch", "tty"],
        cwd=tmp_path, stdin=child, stdout=child, stderr=child, close_fds=True, env=env,
    )
    os.close(child)
    seen = _read_until(main, b">>> ")
    assert b"every statement is a snapshot" in seen
    for line, prompt in ((b"def f(v):\n", b"... "), (b"    return v + 1\n", b"... "),
                         (b"\n", b">>> "), (b"z = f(1)\n", b">>> "), (b"z = 100\n", b">>> "),
                         (b":undo\n", b">>> "), (b"z\n", b">>> ")):
        os.write(main, line)
        seen += _read_until(main, prompt)
    os.write(main, b"\x04")  # Ctrl-D
    seen += _read_until(main, b"resume tty")
    proc.wait(timeout=30)
    os.close(main)
    assert b"undo: back to" in seen and b"([2] z = f(1))" in seen and b"\r\n2\r\n" in seen
    assert proc.returncode == 0
    assert stashdb.open(tmp_path).show("tty").entry("z").literal == "2"


def _read_until(fd: int, marker: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            seen += data
    return seen
