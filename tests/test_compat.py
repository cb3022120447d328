"""The drop-in replacements (stashdb.compat) and ``stashdb import-dill``, on real SQLite files.

What is about a fresh process (a session saved in one, loaded in another;
the ``python -m`` command) runs in real subprocesses. The documented examples
of sessionstash (its README) and of dill (``dill/session.py``'s docstrings)
run unchanged but for the import line.
"""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path

import dill
import pytest
from typer.testing import CliRunner

import stashdb
from conftest import run_python
from stashdb.cli import app
from stashdb.compat import dill_session, sessionstash

OURS_SS = "from stashdb.compat import sessionstash as ss"
OURS_DILL = "from stashdb.compat import dill_session as dill"

# sessionstash 0.1.1's README, "Quick Start", as it is but for the import line.
README = """
import sessionstash as ss

counter = 42
message = "Hello, workspace!"

ss.save_workspace("snapshot.dill")   # Save everything

del counter, message

ss.load_workspace("snapshot.dill")   # Restore
print(counter, message)              # 42 Hello, workspace!
"""

# dill.dump_module's docstring examples (dill/session.py), one process to save ...
DILL_DUMP = """
import dill
squared = lambda x: x*x
dill.dump_module() # save state of __main__ to /tmp/session.pkl

import dill
import pox
pox.plus_one = lambda x: x+1
dill.dump_module('pox_session.pkl', module=pox)

import dill
from types import ModuleType
foo = ModuleType('foo')
foo.values = [1,2,3]
import math
foo.sin = math.sin
dill.dump_module('foo_session.pkl', module=foo, refimported=True)
"""

# ... and a new one to restore ("Restore the state of the saved modules" and
# load_module's examples), each expected output printed.
DILL_LOAD = """
import dill
dill.load_module()
print(squared(2))
pox = dill.load_module('pox_session.pkl')
print(pox.plus_one(1))
foo = dill.load_module('foo_session.pkl')
print([foo.sin(x) for x in foo.values])

import sys
print(pox in sys.modules.values())
import math
print(foo.sin is math.sin)
print(foo in sys.modules.values())

from types import ModuleType
foo = ModuleType('foo')
foo.values = ['a','b']
foo.sin = lambda x: x*x
print(dill.load_module('foo_session.pkl', module=foo))
print([foo.sin(x) for x in foo.values])
"""
DILL_LOAD_OUTPUT = [
    "4", "2", "[0.8414709848078965, 0.9092974268256817, 0.1411200080598672]",
    "True", "True", "False",
    "None", "[0.8414709848078965, 0.9092974268256817, 0.1411200080598672]",
]

# load_module_asdict's docstring example, its expected values printed.
DILL_ASDICT = """
import dill
alist = [1, 2, 3]
anum = 42
dill.dump_module()
anum = 0
new_var = 'spam'
main = dill.load_module_asdict()
print(main['__name__'], main['__session__'])
print(main is globals()) # loaded objects don't reference globals
print(main['alist'] == alist)
print(main['alist'] is alist) # was saved by value
print(main['anum'] == anum) # changed after the session was saved
print(new_var in main) # would be True if the option 'update' was set
"""


@pytest.fixture
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """dill's default file (``session.pkl`` in the temporary directory) in this test's directory."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(dill_session, "TEMPDIR", tmp_path)
    return tmp_path


def python_m(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, input=stdin, capture_output=True, text=True,
        timeout=120,
    )


def commits(path: Path) -> list[stashdb.Commit]:
    """The commits of the store at ``path``, oldest first."""
    return stashdb.log(repo=path)[::-1]


# -- the documented examples, unchanged but for the import ----------------------------------


def test_sessionstash_readme_example_runs_unchanged_but_for_the_import(tmp_path: Path) -> None:
    result = run_python(README.replace("import sessionstash as ss", OURS_SS), tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0] == "✅ Workspace saved → snapshot.dill"
    assert lines[1].startswith("✅ Workspace restored ← snapshot.dill (")
    assert lines[2] == "42 Hello, workspace!"
    # The "file" is a store: one commit holding both values.
    (save,) = commits(tmp_path / "snapshot.dill")
    names = {e.name for e in stashdb.show(save.id, repo=tmp_path / "snapshot.dill").entries}
    assert {"counter", "message"} <= names


@pytest.mark.usefixtures("own_tmp")
def test_dill_dump_module_examples_run_unchanged_but_for_the_import(tmp_path: Path) -> None:
    (tmp_path / "pox.py").write_text("")  # stands in for the pox package of the example
    run_python(DILL_DUMP.replace("import dill", OURS_DILL), tmp_path)
    result = run_python(DILL_LOAD.replace("import dill", OURS_DILL), tmp_path)
    assert result.stdout.splitlines() == DILL_LOAD_OUTPUT
    for name in ("session.pkl", "pox_session.pkl", "foo_session.pkl"):
        assert len(commits(tmp_path / name)) == 1, name  # stores, not pickles
    # The real dill prints the same.
    for name in ("session.pkl", "pox_session.pkl", "foo_session.pkl"):
        (tmp_path / name).unlink()
    run_python(DILL_DUMP, tmp_path)
    assert run_python(DILL_LOAD, tmp_path).stdout.splitlines() == DILL_LOAD_OUTPUT


def test_dill_load_module_asdict_example_runs_unchanged_but_for_the_import(own_tmp: Path) -> None:
    result = run_python(DILL_ASDICT.replace("import dill", OURS_DILL), own_tmp)
    assert result.stdout.splitlines() == [
        f"__main__ {own_tmp / 'session.pkl'}", "False", "True", "False", "False", "False",
    ]


# -- what cannot be pickled -----------------------------------------------------------------


def test_save_workspace_skips_what_cannot_be_pickled_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = {"lock": threading.Lock(), "rows": (i for i in range(3)), "kept": [1, 2, 3]}
    with pytest.warns(UserWarning, match=r"2 values not saved in ws\.db") as caught:
        sessionstash.save_workspace("ws.db", namespace)  # the test runs in tmp_path
    message = str(caught[0].message)
    assert "lock (_thread.lock): cannot pickle" in message
    assert "rows (generator): cannot pickle 'generator' object" in message
    assert "Workspace saved" in capsys.readouterr().out
    loaded: dict[str, object] = {}
    sessionstash.load_workspace(tmp_path / "ws.db", loaded)
    assert loaded == {"kept": [1, 2, 3]}


def test_dump_module_stores_the_rest_where_dill_fails_the_whole_dump(
    tmp_path: Path, own_tmp: Path
) -> None:
    script = textwrap.dedent("""
        import dill
        import sqlite3
        alist = [1, 2, 3]
        rows = (i for i in range(3))
        conn = sqlite3.connect(":memory:")
        try:
            dill.dump_module("state.pkl")
        except Exception as exc:
            print("failed:", type(exc).__name__, exc)
    """)
    real = run_python(script, tmp_path)
    assert "failed: TypeError cannot pickle" in real.stdout
    ours = run_python(script.replace("import dill", OURS_DILL), tmp_path)
    assert "failed" not in ours.stdout
    assert "PicklingWarning: 2 values not saved in state.pkl" in ours.stderr
    assert "conn (sqlite3.Connection)" in ours.stderr and "rows (generator)" in ours.stderr
    saved = dill_session.load_module_asdict(tmp_path / "state.pkl")
    assert saved["alist"] == [1, 2, 3] and "rows" not in saved and "conn" not in saved


# -- a store: incremental saves, history ----------------------------------------------------


def test_saving_again_is_a_commit_that_stores_only_what_changed(tmp_path: Path) -> None:
    path = tmp_path / "ws.db"
    namespace = {"big": list(range(10_000)), "small": 1}
    sessionstash.save_workspace(path, namespace)
    namespace["small"] = 2
    sessionstash.save_workspace(path, namespace)
    first, second = commits(path)
    assert second.parents == (first.id,)
    statuses = {e.name: e.status for e in stashdb.show(second.id, repo=path).entries}
    assert statuses == {"big": "reused", "small": "stored"}
    loaded: dict[str, object] = {}
    sessionstash.load_workspace(path, loaded)  # the latest save
    assert loaded["small"] == 2


def test_dump_module_again_is_a_commit_and_load_module_takes_the_latest(tmp_path: Path) -> None:
    work = types.ModuleType("work")
    work.values = list(range(1000))
    work.step = 1
    dill_session.dump_module(tmp_path / "s.pkl", module=work)
    work.step = 2
    dill_session.dump_module(tmp_path / "s.pkl", module=work)
    _, second = commits(tmp_path / "s.pkl")
    statuses = {e.name: e.status for e in stashdb.show(second.id, repo=tmp_path / "s.pkl").entries}
    assert statuses == {"values": "reused", "step": "stored"}
    work.step = 0
    assert dill_session.load_module(tmp_path / "s.pkl", module=work) is None
    assert work.step == 2 and work.values == list(range(1000))


def test_stashdb_log_lists_every_save(tmp_path: Path) -> None:
    path = tmp_path / "ws.db"
    sessionstash.save_workspace(path, {"x": 1})
    sessionstash.save_workspace(path, {"x": 2})
    result = CliRunner(env={"STASHDB_URL": None, "COLUMNS": "120"}).invoke(
        app, ["log", "--store", str(path)]
    )
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "save_workspace" in line]
    assert len(rows) == 2
    assert [c.short_id for c in commits(path)[::-1]] == [row.split()[0] for row in rows]


# -- the command: python -m stashdb.compat.sessionstash ---------------------------------------


def test_the_command_saves_and_loads_in_fresh_processes(tmp_path: Path) -> None:
    saved = python_m("stashdb.compat.sessionstash", "save", "cli.db", cwd=tmp_path)
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout == "✅ Workspace saved → cli.db\n"
    run_python(f"{OURS_SS}\ncounter = 21\nss.save_workspace('cli.db')\n", tmp_path)
    assert len(commits(tmp_path / "cli.db")) == 2
    loaded = python_m(
        "stashdb.compat.sessionstash", "load", "cli.db", "--shell", cwd=tmp_path,
        stdin="print('twice', counter * 2)\n",
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.startswith("✅ Workspace restored ← cli.db (")
    assert "twice 42" in loaded.stdout


def test_the_command_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    failed = python_m("stashdb.compat.sessionstash", "load", "missing.db", cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr
    assert "missing.db" in failed.stderr


# -- files written by the real tools --------------------------------------------------------


def test_files_of_the_real_dill_and_sessionstash_still_load(tmp_path: Path) -> None:
    run_python("""
        import dill, sessionstash
        squared = lambda x: x * x
        values = [1, 2, 3]
        dill.dump_module("real.pkl")
        sessionstash.save_workspace("real.dill", namespace={"counter": 42, "rows": values})
    """, tmp_path)
    # (Not `as dill`: the session loaded brings back its own `dill`, the real one.)
    result = run_python(f"""
        from stashdb.compat import dill_session
        {OURS_SS}
        dill_session.load_module("real.pkl")
        print(squared(3), values)
        ns = dill_session.load_module_asdict("real.pkl")
        print(ns["__name__"], ns["values"])
        ss.load_workspace("real.dill")
        print(counter, rows)
        print(dill_session.load_module_asdict("real.dill")["counter"])
    """, tmp_path)
    assert result.stdout.splitlines() == [
        "9 [1, 2, 3]", "__main__ [1, 2, 3]", "✅ Workspace restored ← real.dill (2 objects)",
        "42 [1, 2, 3]", "42",
    ]


def test_saving_over_an_old_pickle_replaces_it_but_never_another_database(
    tmp_path: Path,
) -> None:
    old = tmp_path / "old.dill"
    old.write_bytes(dill.dumps({"x": 1}))
    sessionstash.save_workspace(old, {"y": 2})
    assert [e.name for e in stashdb.show(repo=old).entries] == ["y"]
    other = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(stashdb.NotAStore):
        sessionstash.save_workspace(other, {"y": 2})
    assert other.read_bytes().startswith(b"SQLite format 3")


# -- dill's details ---------------------------------------------------------------------------


def test_deprecated_names_warn_as_dill_does(tmp_path: Path) -> None:
    work = types.ModuleType("work")
    work.x = 1
    with pytest.warns(PendingDeprecationWarning, match=r"dump_session\(\) has been renamed"):
        dill_session.dump_session(tmp_path / "s.pkl", main=work)
    with pytest.warns(PendingDeprecationWarning, match="The argument 'main' has been renamed"):
        dill_session.dump_module(tmp_path / "s.pkl", main=work)
    work.x = 0
    with pytest.warns(PendingDeprecationWarning, match=r"load_session\(\) has been renamed"):
        assert dill_session.load_session(tmp_path / "s.pkl", main=work) is None
    assert work.x == 1
    with pytest.raises(stashdb.InvalidArguments, match="both 'module' and 'main'"), \
            pytest.warns(PendingDeprecationWarning):
        dill_session.dump_module(tmp_path / "s.pkl", module=work, main=work)
    with pytest.raises(stashdb.InvalidArguments, match="saved state of module 'work'"):
        dill_session.load_module(tmp_path / "s.pkl", module=types.ModuleType("other"))


def test_a_stream_is_written_and_read_by_dill_itself() -> None:
    foo = types.ModuleType("foo")
    foo.values = [1, 2, 3]
    buffer = io.BytesIO()
    dill_session.dump_module(buffer, module=foo)
    assert buffer.getvalue().startswith(b"\x80")  # a pickle, as dill writes it
    buffer.seek(0)
    loaded = dill_session.load_module(buffer)
    assert loaded is not None and loaded is not foo and loaded.values == [1, 2, 3]


def test_importing_the_drop_ins_loads_no_cli_framework_and_no_database(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        from stashdb.compat import dill_session, sessionstash
        print(sorted(m for m in ("typer", "rich", "sqlalchemy", "IPython") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- stashdb import-dill ----------------------------------------------------------------------


@pytest.fixture
def session_files(tmp_path: Path) -> Path:
    """a.pkl and b.pkl by dill.dump_module (b: one more value), c.dill by sessionstash."""
    run_python("""
        import dill, sessionstash
        rows = [1, 2]
        dill.dump_module("a.pkl")
        rows.append(3)
        label = "second"
        dill.dump_module("b.pkl")
        sessionstash.save_workspace("c.dill", namespace={"counter": 7})
    """, tmp_path)
    (tmp_path / "bad.pkl").write_text("not a pickle")
    return tmp_path


def test_import_dill_makes_one_commit_per_file_in_order(session_files: Path) -> None:
    runner = CliRunner(env={"STASHDB_URL": None})
    store = str(session_files / "imported.db")
    result = runner.invoke(app, ["import-dill", "a.pkl", "b.pkl", "c.dill", "--store", store])
    assert result.exit_code == 0, result.output
    a, b, c = commits(session_files / "imported.db")
    assert [a.message, b.message, c.message] == [
        "imported a.pkl", "imported b.pkl", "imported c.dill"]
    assert stashdb.at(a.id, repo=store)["rows"] == [1, 2]
    assert stashdb.at(b.id, repo=store)["rows"] == [1, 2, 3]
    assert stashdb.at(b.id, repo=store)["label"] == "second"
    assert stashdb.at(c.id, repo=store)["counter"] == 7


def test_import_dill_stops_at_a_bad_file_saying_which_and_what_came_before(
    session_files: Path,
) -> None:
    runner = CliRunner(env={"STASHDB_URL": None})
    store = str(session_files / "imported.db")
    result = runner.invoke(app, ["import-dill", "a.pkl", "bad.pkl", "b.pkl", "--store", store])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("stashdb: error: bad.pkl is not a dill session file")
    (first,) = commits(session_files / "imported.db")
    assert line.endswith(f"imported before it: a.pkl as {first.short_id}")
    # A missing file fails before anything is committed.
    result = runner.invoke(app, ["import-dill", "b.pkl", "nope.pkl", "--store", store])
    assert result.exit_code == 1 and "nope.pkl" in result.stderr
    assert len(commits(session_files / "imported.db")) == 1
