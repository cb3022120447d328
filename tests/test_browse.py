"""Browsing (log, show, diff, history, at's metadata) never unpickles; at() is lazy."""

from __future__ import annotations

import getpass
import platform
import socket

import numpy as np
import pandas as pd
import pytest

import stashdb

LOADED: list[str] = []


class Tripwire:
    """Records every time an instance is unpickled."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __setstate__(self, state: dict[str, str]) -> None:
        LOADED.append(state["label"])
        self.__dict__.update(state)


@pytest.fixture(autouse=True)
def _reset() -> None:
    LOADED.clear()


def test_log_show_diff_history_never_unpickle(repo: stashdb.Repo) -> None:
    repo.commit("one", namespace={"a": Tripwire("a1"), "b": Tripwire("b1")})
    repo.commit("two", namespace={"a": Tripwire("a2"), "b": Tripwire("b1")})
    repo.log()
    repo.show()
    repo.show("HEAD~1")
    repo.diff("HEAD~1")
    repo.history("a")
    snapshot = repo.at()
    assert sorted(snapshot) == ["a", "b"] and len(snapshot) == 2
    assert snapshot.entries["a"].type_name == "test_browse.Tripwire"
    assert LOADED == []


def test_at_unpickles_only_the_name_read(repo: stashdb.Repo) -> None:
    repo.commit(namespace={"a": Tripwire("a"), "b": Tripwire("b")})
    snapshot = repo.at()
    assert snapshot["b"].label == "b"
    assert LOADED == ["b"]
    assert snapshot["b"] is snapshot["b"]  # read once, then kept
    assert LOADED == ["b"]
    with pytest.raises(KeyError):
        snapshot["missing"]


def test_functions_read_through_at_see_the_snapshots_other_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import last_json, run_python

    run_python(
        """
        import stashdb
        rate = 3
        def scaled(v):
            return v * rate
        stashdb.commit("v1")
        rate = 5
        stashdb.commit("v2")
        """,
        tmp_path,
    )
    result = run_python(
        """
        import json, stashdb
        old = stashdb.at("HEAD~1")
        print(json.dumps([old["scaled"](2), stashdb.at()["scaled"](2)]))
        """,
        tmp_path,
    )
    assert last_json(result) == [6, 10]


def test_entries_carry_type_sizes_timing_and_bounded_previews(repo: stashdb.Repo) -> None:
    df = pd.DataFrame({"price": [1.5, 2.5], "name": ["a", "b"]})
    commit = repo.commit(
        namespace={
            "arr": np.zeros((3, 4), dtype=np.float32),
            "df": df,
            "text": "x" * 10_000,
            "n": 5,
            "np": np,
        }
    )
    arr, frame, text, n, mod = (commit.entry(k) for k in ("arr", "df", "text", "n", "np"))
    assert arr.type_name == "numpy.ndarray" and arr.shape == "(3, 4)" and "float32" in arr.preview
    assert frame.type_name == "pandas.DataFrame" and frame.shape == "(2, 2)"
    assert "price: float64" in frame.preview and "name:" in frame.preview
    assert len(text.preview) <= 200 and text.literal is None
    assert n.literal == "5" and n.size > 0 and n.stored_size > 0 and n.seconds >= 0
    assert mod.kind == "module" and mod.module == "numpy" and mod.version == np.__version__


def test_commit_metadata(repo: stashdb.Repo) -> None:
    first = repo.commit("first", namespace={"a": np.zeros(3)})
    second = repo.commit("second", namespace={"a": 1})
    assert second.parents == (first.id,) and first.parents == ()
    assert second.message == "second" and second.branch == "main"
    assert second.time >= first.time and second.time.tzinfo is not None
    assert second.user == getpass.getuser() and second.host == socket.gethostname()
    assert second.python == platform.python_version()
    assert second.dill and first.packages["numpy"] == np.__version__
    assert len(second.id) == 32 and second.short_id == second.id[:8]


def test_diff_reports_added_removed_changed_with_old_and_new_values(repo: stashdb.Repo) -> None:
    repo.commit("a", namespace={"n": 1, "s": "old", "gone": [1], "same": {"k": 1},
                                "arr": np.zeros(3)})
    repo.commit("b", namespace={"n": 2, "s": "new", "same": {"k": 1}, "arr": np.ones(3),
                                "new": (1, 2)})
    diff = repo.diff("HEAD~1", "HEAD")
    assert [c.name for c in diff.added] == ["new"]
    assert [c.name for c in diff.removed] == ["gone"]
    assert [c.name for c in diff.changed] == ["arr", "n", "s"]
    assert [c.name for c in diff.unchanged] == ["same"]
    n = next(c for c in diff.changed if c.name == "n")
    assert (n.old_value, n.new_value) == ("1", "2")
    s = next(c for c in diff.changed if c.name == "s")
    assert (s.old_value, s.new_value) == ("'old'", "'new'")
    text = str(diff)
    assert "+ new (tuple, " in text and "- gone (list, " in text and ": 1 → 2" in text
    assert not repo.diff("HEAD", "HEAD")


def test_history_of_one_name(repo: stashdb.Repo) -> None:
    repo.commit("1", namespace={"x": 1, "y": 0})
    repo.commit("2", namespace={"x": 1, "y": 1})
    repo.commit("3", namespace={"x": 2, "y": 1})
    repo.commit("4", namespace={"y": 1})
    repo.commit("5", namespace={"x": 3, "y": 1})
    versions = repo.history("x")
    assert [(v.commit.message, v.status) for v in versions] == [
        ("5", "added"), ("4", "removed"), ("3", "changed"), ("1", "added"),
    ]
    assert versions[0].entry is not None and versions[0].entry.literal == "3"
    assert repo.history("never") == []


def test_log_limit_branch_and_all(repo: stashdb.Repo) -> None:
    repo.commit("m1", namespace={"x": 1})
    repo.branch("side")
    repo.commit("s1", namespace={"x": 2}, branch="side")
    repo.commit("m2", namespace={"x": 3})
    repo.tag("release")
    assert [c.message for c in repo.log()] == ["m2", "m1"]
    assert [c.message for c in repo.log(limit=1)] == ["m2"]
    assert [c.message for c in repo.log(branch="side")] == ["s1", "m1"]
    assert [c.message for c in repo.log(all=True)] == ["m2", "s1", "m1"]
    assert repo.log()[0].tags == ("release",)


def test_a_group_member_that_did_not_change_is_not_reported_changed(repo: stashdb.Repo) -> None:
    raw = [{"id": i} for i in range(100)]
    rows = raw[:50]  # shares its dicts with raw: one group
    repo.commit(namespace={"raw": raw, "rows": rows})
    rows = rows[:10]
    repo.commit(namespace={"raw": raw, "rows": rows})
    diff = repo.diff("HEAD~1")
    assert [c.name for c in diff.changed] == ["rows"]
    assert [c.name for c in diff.unchanged] == ["raw"]
    assert [v.status for v in repo.history("raw")] == ["added"]
