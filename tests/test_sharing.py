"""Names that share mutable objects are stored together and keep their identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import stashdb
from conftest import last_json, run_python
from stashdb.pickling.grouping import find_groups


def test_aliases_and_shared_inner_objects_keep_identity_in_a_fresh_process(tmp_path: Path) -> None:
    run_python(
        """
        import stashdb
        class Node:
            def __init__(self, payload):
                self.payload = payload
        a = [1, 2, 3]
        b = a
        d = {"k": a}
        inner = [0]
        x = [inner, 1]
        y = [inner, 2]
        target = {"v": 1}
        node = Node(target)
        unrelated = [9]
        stashdb.commit()
        """,
        tmp_path,
    )
    result = run_python(
        """
        import stashdb
        stashdb.checkout()
        import json  # after: an exact checkout removes names the snapshot lacks
        print(json.dumps([b is a, d["k"] is a, x[0] is y[0], node.payload is target,
                          unrelated is not a]))
        """,
        tmp_path,
    )
    assert last_json(result) == [True, True, True, True, True]


def test_groups_are_recorded_in_the_manifest(repo: stashdb.Repo) -> None:
    a = [1]
    ns = {"a": a, "b": a, "d": {"k": a}, "solo": [2]}
    commit = repo.commit(namespace=ns)
    assert commit.entry("a").group == ("b", "d")
    assert commit.entry("solo").group == ()
    assert commit.entry("a").object_id == commit.entry("d").object_id


def test_unrelated_arrays_and_frames_stay_separate() -> None:
    ns = {
        "x": np.zeros(10),
        "y": np.ones(10),
        "df1": pd.DataFrame({"a": [1, 2]}),
        "df2": pd.DataFrame({"a": [3.0], "b": ["s"]}),
        "s1": pd.Series([1, 2]),
        "n1": 5,
        "n2": 5,
        "t1": (1, 2),
        "t2": (1, 2),
        "cls": dict,
        "fn": len,
    }
    assert find_groups(ns) == [[n] for n in ns]


def test_immutable_containers_holding_shared_objects_still_tie() -> None:
    shared: list[int] = []
    assert find_groups({"t": (shared, 1), "u": (2, (shared,)), "v": [3]}) == [["t", "u"], ["v"]]


def test_restoring_one_name_of_a_group_brings_back_that_name(repo: stashdb.Repo) -> None:
    a = [1, 2]
    repo.commit(namespace={"a": a, "d": {"k": a}})
    ns: dict[str, object] = {}
    report = repo.checkout(only=["d"], namespace=ns)
    assert report.restored == ["d"]
    assert ns == {"d": {"k": [1, 2]}}


def test_a_group_with_one_unpicklable_member_stores_the_others(repo: stashdb.Repo) -> None:
    import threading

    a = [1]
    ns = {"a": a, "holder": {"list": a, "lock": threading.Lock()}}
    commit = repo.commit(namespace=ns)
    assert commit.stored == ["a"]
    assert [s.name for s in commit.skipped] == ["holder"]


def test_shared_singletons_do_not_tie_names() -> None:
    import datetime
    import enum

    class Color(enum.Enum):
        RED = 1

    utc = datetime.timezone.utc
    ns = {
        "a": {"color": Color.RED, "when": datetime.datetime(2026, 1, 1, tzinfo=utc)},
        "b": [Color.RED, datetime.datetime(2026, 1, 2, tzinfo=utc)],
        "c": Color.RED,
    }
    assert find_groups(ns) == [["a"], ["b"], ["c"]]


def test_equal_but_separate_values_stay_separate(repo: stashdb.Repo) -> None:
    x, y = [1, 2], [1, 2]
    results: list[int] = []
    errors: list[int] = []
    a: list[int] = []
    c: list[int] = []
    ns = {"x": x, "y": y, "results": results, "errors": errors,
          "a": a, "b": [a], "c": c, "d": [c]}
    commit = repo.commit(namespace=ns)
    assert commit.entry("b").group == ("a",) and commit.entry("d").group == ("c",)
    for restored in ({}, None):
        target: dict[str, object] = {} if restored is not None else dict(repo.at(commit.id))
        if restored is not None:
            repo.checkout(commit.id, namespace=target)
        assert target["x"] == target["y"] and target["x"] is not target["y"]
        assert target["results"] is not target["errors"]
        assert target["b"][0] is target["a"] and target["d"][0] is target["c"]  # type: ignore[index]
        assert target["a"] is not target["c"]


def test_functions_restored_into_an_empty_namespace_use_it(repo: stashdb.Repo) -> None:
    source: dict[str, object] = {"__name__": "__main__"}
    exec("k = 3\ndef f():\n    return k\n", source)
    repo.commit(namespace=source)
    target: dict[str, object] = {}
    report = repo.checkout(namespace=target)
    assert report.ok and target["f"].__globals__ is target  # type: ignore[attr-defined]
    assert target["f"]() == 3  # type: ignore[operator]
