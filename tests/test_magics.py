"""The %stash magic and auto-snapshot, in a real IPython shell and a real Jupyter kernel."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import stashdb
from conftest import run_python, shell_session

pytest.importorskip("IPython")


def messages(tmp_path: Path, branch: str) -> list[str]:
    return [c.message for c in stashdb.open(tmp_path).log(branch=branch)]


def test_auto_snapshot_commits_each_cell_that_changed_something(tmp_path: Path) -> None:
    cells = ["%load_ext stashdb", "%stash auto on --branch nb", "x = 1", "print(x)",
             "x = 2", "y = x * 10", "y"]
    out = shell_session(tmp_path, cells, "failed")
    assert out == []
    # newest first; "print(x)" and "y" changed nothing: no commit
    assert messages(tmp_path, "nb") == [
        "cell [6]: y = x * 10", "cell [5]: x = 2", "cell [3]: x = 1", "auto-snapshot on",
    ]
    snapshot = stashdb.open(tmp_path).at("nb")
    assert (snapshot["x"], snapshot["y"]) == (2, 20)
    assert "In" not in snapshot and "get_ipython" not in snapshot  # IPython's own names


def test_undo_goes_back_one_changing_cell_at_a_time(tmp_path: Path) -> None:
    cells = ["%load_ext stashdb", "%stash auto on", "x = 1", "x = 2\ny = 3", "print('no change')",
             "%stash undo"]
    out = shell_session(tmp_path, cells, "{'x': ns['x'], 'y': 'y' in ns, 'failed': failed}")
    assert out == {"x": 1, "y": False, "failed": []}
    out = shell_session(tmp_path, [*cells, "%stash undo", "%stash undo"],
                        "{'x': 'x' in ns, 'failed': failed}")
    assert out == {"x": False, "failed": ["%stash undo"]}  # the third: nothing left to undo


def test_auto_snapshot_into_a_store_given_by_url_on_each_backend(
    tmp_path: Path, store_url: str
) -> None:
    cells = ["%load_ext stashdb", f"%stash auto on --branch nb --store {store_url}",
             "x = 1", "x = 2", "%stash undo"]
    out = shell_session(tmp_path, cells, "[ns['x'], failed]")
    assert out == [1, []]
    assert stashdb.open(store_url).at("nb")["x"] == 2


def test_a_failed_cell_is_not_committed_but_its_changes_are_caught_next(tmp_path: Path) -> None:
    cells = ["%load_ext stashdb", "%stash auto on --branch nb", "x = 1",
             "x = 5\nraise ValueError('half done')", "y = 1"]
    shell_session(tmp_path, cells, "failed")
    assert messages(tmp_path, "nb")[0] == "cell [5]: y = 1"
    assert stashdb.open(tmp_path).at("nb")["x"] == 5
    # undo right after a failed cell restores the last snapshot: x = 1
    out = shell_session(tmp_path, [*cells[:4], "%stash undo"], "ns['x']")
    assert out == 1


def test_a_mutation_made_inside_a_called_function_or_method_is_captured(tmp_path: Path) -> None:
    cells = [
        "%load_ext stashdb",
        "data = []\nlog = []\ndef add(v):\n    data.append(v)",
        "class Box:\n    def put(self, v):\n        log.append(v)\nbox = Box()",
        "def indirect(v):\n    add(v)",
        "%stash auto on --branch nb",
        "add(5)",
        "box.put('a')",
        "indirect(6)",
    ]
    shell_session(tmp_path, cells, "failed")
    repo = stashdb.open(tmp_path)
    assert repo.at("nb")["data"] == [5, 6] and repo.at("nb")["log"] == ["a"]
    assert repo.at("nb~1")["data"] == [5]


def test_changes_through_decorators_caches_and_containers_of_functions_are_captured(
    tmp_path: Path,
) -> None:
    cells = [
        "%load_ext stashdb",
        "import functools\nresults = []\nlog = []\nseen = []\n"
        "def logged(fn):\n    def wrapper(*a):\n        return fn(*a)\n    return wrapper\n"
        "@logged\ndef add(v):\n    results.append(v)\n"
        "@functools.lru_cache(maxsize=None)\ndef remember(v):\n    seen.append(v)\n"
        "def note(v):\n    log.append(v)\nhandlers = {'note': note}",
        "%stash auto on --branch nb",
        "add(3)",
        "remember(4)",
        "handlers['note']('hi')",
        # stashdb's own API in a cell sees the snapshots still being written
        "import stashdb\nsnap = stashdb.at('nb')\n"
        "seen_now = [snap['results'], snap['seen'], snap['log']]",
    ]
    out = shell_session(tmp_path, cells, "[ns['seen_now'], failed]")
    assert out == [[[3], [4], ["hi"]], []]


def test_only_what_a_cell_could_touch_is_pickled_again(tmp_path: Path) -> None:
    cells = ["%load_ext stashdb", "big = list(range(100_000))\nother = {'a': 1}",
             "%stash auto on --branch nb", "other['a'] = 2"]
    shell_session(tmp_path, cells, "failed")
    made = stashdb.open(tmp_path).show("nb")
    # big was carried over from the previous snapshot, not pickled again
    assert made.stored == ["other"] and "big" in made.reused
    assert made.entry("big").seconds == stashdb.open(tmp_path).show("nb~1").entry("big").seconds


def test_another_magic_makes_the_next_snapshot_capture_everything(tmp_path: Path) -> None:
    script = tmp_path / "make.py"
    script.write_text("made_by_run = 42\n")
    cells = ["%load_ext stashdb", "%stash auto on --branch nb", "%time z = 3",
             f"%run -i {script}"]
    assert shell_session(tmp_path, cells, "failed") == []
    snapshot = stashdb.open(tmp_path).at("nb")
    assert snapshot["z"] == 3 and snapshot["made_by_run"] == 42


def test_checkout_keeps_unchanged_values_in_memory_and_restores_the_rest(tmp_path: Path) -> None:
    cells = [
        "%load_ext stashdb", "%stash auto on",
        "big = list(range(100_000))\nbig_id = id(big)\nsmall = 1",
        "small = 2\nextra = 'x'",
        "%stash checkout HEAD~1",
    ]
    out = shell_session(
        tmp_path, cells,
        "{'same': id(ns['big']) == ns['big_id'], 'small': ns['small'], "
        "'extra': 'extra' in ns, 'failed': failed}",
    )
    assert out == {"same": True, "small": 1, "extra": False, "failed": []}


def test_a_value_changed_through_its_alias_is_not_kept_on_checkout(tmp_path: Path) -> None:
    # records.append changes alias too (one list): neither may stay in memory,
    # and both must come back as one object again.
    cells = ["%load_ext stashdb", "records = [1]\nalias = records\nother = {'k': 1}",
             "%stash commit -m base", "records.append(2)", "%stash checkout HEAD --force"]
    out = shell_session(
        tmp_path, cells,
        "[ns['alias'], ns['records'] is ns['alias'], ns['other'], failed]",
    )
    assert out == [[1], True, {"k": 1}, []]


def test_a_checkout_that_fails_or_is_interrupted_loses_nothing(tmp_path: Path) -> None:
    cells = [
        "%load_ext stashdb",
        "class Fragile:\n    def __setstate__(self, state):\n"
        "        if state.get('boom'):\n            raise KeyboardInterrupt  # Ctrl-C mid-restore\n"
        "        self.__dict__.update(state)\n"
        "f = Fragile()\nf.boom = True\nbig = list(range(10))",
        "%stash auto on --branch nb",
        "f = Fragile()\nbig = list(range(20))",
        "%stash checkout HEAD~1 --only big,nosuch",  # a typo: refused before anything moves
        "%stash checkout HEAD~1",  # interrupted while restoring f
        "after = len(big)",
    ]
    out = shell_session(
        tmp_path, cells, "[ns['after'], type(ns['f']).__name__, failed[-2:]]"
    )
    assert out == [20, "Fragile", ["%stash checkout HEAD~1 --only big,nosuch",
                                   "%stash checkout HEAD~1"]]
    assert sorted(stashdb.open(tmp_path).show("nb").names) == ["Fragile", "after", "big", "f"]


def test_checkout_only_some_names_and_merge(tmp_path: Path) -> None:
    cells = ["%load_ext stashdb", "%stash auto on", "a = 1\nb = 1", "a = 2\nb = 2\nc = 3",
             "%stash checkout HEAD~1 --only a"]
    out = shell_session(tmp_path, cells, "[ns['a'], ns['b'], ns['c'], failed]")
    assert out == [1, 2, 3, []]
    cells[-1] = "%stash checkout HEAD~1 --merge"
    out = shell_session(tmp_path, cells, "[ns['a'], ns['b'], ns['c'], failed]")
    assert out == [1, 1, 3, []]


def test_unstorable_values_are_reported_once(tmp_path: Path) -> None:
    result = run_python(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        for cell in ["%load_ext stashdb", "%stash auto on", "gen = (i for i in 'ab')",
                     "x = 1", "x = 2", "other = gen", "x = 3"]:
            shell.run_cell(cell, store_history=True)
        """,
        tmp_path,
    )
    notes = [line for line in result.stderr.splitlines() if "not stored" in line]
    # once for gen, once for the new name that appeared; not on every cell
    assert len(notes) == 2
    assert "not stored: gen (generator)" in notes[0] and "not stored: other" in notes[1]


def test_mistakes_are_one_line_and_the_shell_goes_on(tmp_path: Path) -> None:
    result = run_python(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        for cell in ["%load_ext stashdb", "%stash checkout nope", "%stash frobnicate",
                     "%stash undo", "%stash", "print('still here')"]:
            shell.run_cell(cell, store_history=True)
        """,
        tmp_path,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "unknown revision 'nope'" in output and "invalid choice: 'frobnicate'" in output
    assert "undo needs snapshots" in output and "%stash undo" in output  # usage text
    assert "still here" in output


def test_browsing_magics_print_tables(tmp_path: Path) -> None:
    result = run_python(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        for cell in ["%load_ext stashdb", "%stash auto on", "x = 1", "x = 2",
                     "%stash log", "%stash show", "%stash diff HEAD~1", "%stash history x",
                     "%stash tag good HEAD~1", "%stash status", "%stash auto off",
                     "%stash commit -m by-hand"]:
            shell.run_cell(cell, store_history=True)
        """,
        tmp_path,
    )
    out = result.stdout
    assert "cell [4]: x = 2" in out and "cell [3]: x = 1" in out  # log
    assert "changed" in out and "tagged" in out and "auto-snapshot off" in out
    assert "by-hand" in out and "changed since: nothing" in out
    assert stashdb.open(tmp_path).show("good").message == "cell [3]: x = 1"


def test_the_profile_setting_loads_the_extension(tmp_path: Path) -> None:
    # c.InteractiveShellApp.extensions = ["stashdb"] is what a profile does.
    result = run_python(
        """
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.extension_manager.load_extension("stashdb")
        print(shell.find_line_magic("stash") is not None)
        """,
        tmp_path,
    )
    assert result.stdout.strip().endswith("True")


def test_names_in_code_sees_reads_writes_deletes_and_magic_code() -> None:
    from stashdb.workspace.tracker import names_in_code, reachable_names

    assert names_in_code("a = b + c.d\ndel e\nimport f.g as h\nfor i in j: pass") == {
        "a", "b", "c", "e", "h", "i", "j",
    }
    assert names_in_code("get_ipython().run_line_magic('time', 'x = y')") == {
        "get_ipython", "x", "y",
    }
    assert names_in_code("get_ipython().run_line_magic('run', 'script.py')") is None
    assert names_in_code("def broken(:") is None
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(  # a notebook's functions refer to its variables as globals
        "data = []\ndef add(v):\n    data.append(v)\ndef outer():\n    add(1)\nunrelated = 1",
        ns,
    )
    assert reachable_names({"outer"}, ns) == {"outer", "add", "data"}

    def make_counter() -> Any:
        counts: list[int] = []

        def count() -> None:
            counts.append(1)

        return counts, count

    ns["counts"], ns["count"] = make_counter()  # a closure: by value, matched by identity
    assert reachable_names({"count"}, ns) == {"count", "counts"}


def test_the_branch_is_named_after_the_notebook_or_the_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stashdb.ipython.shell import branch_for_session

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert branch_for_session({"__session__": "/home/me/My Analysis (v2).ipynb"}) == (
        "nb/My-Analysis-v2"
    )
    monkeypatch.setenv("JPY_SESSION_NAME", "/work/clean.ipynb")
    assert branch_for_session({}) == "nb/clean"
    monkeypatch.delenv("JPY_SESSION_NAME")
    assert branch_for_session({}).startswith("ipython/")


def test_a_real_jupyter_kernel_runs_a_notebook_with_auto_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel spec for this interpreter, wherever the tests run from (an
    # installed "python3" spec would start whatever `python` is on PATH).
    spec = tmp_path / "jupyter" / "kernels" / "stashdb-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "stashdb test", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    cells = [
        "%load_ext stashdb",
        "%stash auto on --branch nb/analysis",
        "import numpy as np\nweights = np.arange(5.0)\nlabel = 'first'",
        "weights *= 2\nlabel = 'second'",
        "%stash log",
        "%stash checkout HEAD~1",
        "assert label == 'first' and weights.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]\nprint('ok')",
        "%stash undo",
        "assert label == 'second'",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="stashdb-test",
        resources={"metadata": {"path": tmp_path}},
    )
    client.execute()  # raises CellExecutionError if any cell fails
    outputs = [cell.outputs for cell in notebook.cells]
    log_output = outputs[4]
    assert any("text/html" in o.get("data", {}) for o in log_output)  # a table, as HTML
    assert "cell [4]" in json.dumps(log_output)
    assert "ok" in json.dumps(outputs[6])
    assert messages(tmp_path, "nb/analysis")[:2] == [
        "cell [4]: weights *= 2\nlabel = 'second'",
        "cell [3]: import numpy as np\nweights = np.arange(5.0)\nlabel = 'first'",
    ]
