"""In a real IPython shell: IPython's own names are never committed, and survive checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import last_json, run_python

pytest.importorskip("IPython")


def test_commit_and_checkout_inside_an_ipython_shell(tmp_path: Path) -> None:
    result = run_python(
        """
        import json
        from IPython.core.interactiveshell import InteractiveShell

        shell = InteractiveShell.instance()
        cells = [
            "import stashdb",
            "df = [1, 2, 3]",
            "df",                               # sets _, _2, Out[2]
            "c = stashdb.commit('in ipython')",
            "df.append(4); scratch = 1",
            "r = stashdb.checkout()",          # c is not in the snapshot: removed
        ]
        for cell in cells:
            outcome = shell.run_cell(cell, store_history=True)
            assert outcome.success, outcome.error_in_exec
        ns = shell.user_ns
        print(json.dumps({
            "committed": ns["r"].commit.names,
            "c": "c" in ns,
            "df": ns["df"],
            "scratch": "scratch" in ns,
            "kept": [n for n in ("In", "Out", "_", "_i1", "get_ipython", "exit", "open")
                     if n in ns],
        }))
        """,
        tmp_path,
    )
    out = last_json(result)
    assert out["committed"] == ["df", "stashdb"]
    assert out["df"] == [1, 2, 3]
    # Never committed (git's untracked files): an exact checkout leaves them.
    assert out["scratch"] is True and out["c"] is True
    assert out["kept"] == ["In", "Out", "_", "_i1", "get_ipython", "exit", "open"]
