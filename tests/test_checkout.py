"""Checkout: exact, merge, partial; failures are reported and the rest restores."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import stashdb
from conftest import last_json, raw_connection, run_python
from stashdb.storage import schema


def test_exact_checkout_removes_what_the_current_snapshot_held_and_no_more(
    repo: stashdb.Repo,
) -> None:
    import json

    old = repo.commit("old", namespace={"a": 1, "b": [2]})
    repo.commit("HEAD", namespace={"a": 2, "b": [3], "gone": "tracked", "json": json})
    ns = {"a": 10, "b": [3], "gone": "tracked", "json": json, "mine": "hours of work",
          "__builtins__": {}, "_hidden": 4, "In": [], "Out": {}}
    report = repo.checkout(old.id, namespace=ns)
    # `gone` was in the current snapshot and is not in this one: like git, removed.
    # Never removed: `mine` (no snapshot holds it), a module, default-excluded names.
    assert report.removed == ["gone"] and report.restored == ["a", "b"]
    assert ns == {"a": 1, "b": [2], "json": json, "mine": "hours of work",
                  "__builtins__": {}, "_hidden": 4, "In": [], "Out": {}}


def test_merge_keeps_other_names(repo: stashdb.Repo) -> None:
    repo.commit(namespace={"a": 1})
    ns = {"a": 10, "extra": 3}
    report = repo.checkout(namespace=ns, merge=True)
    assert report.removed == []
    assert ns == {"a": 1, "extra": 3}


def test_only_restores_just_those_names_and_touches_nothing_else(repo: stashdb.Repo) -> None:
    repo.commit("v1", namespace={"df": [1, 2], "model": "m1", "n": 1})
    repo.commit("v2", namespace={"df": [3], "model": "m2", "n": 2})
    ns = {"df": "current", "model": "current", "other": True}
    report = repo.checkout("HEAD~1", only=["df"], namespace=ns)
    assert report.restored == ["df"]
    assert ns == {"df": [1, 2], "model": "current", "other": True}


def test_only_a_name_missing_from_the_snapshot_is_an_error_and_changes_nothing(
    repo: stashdb.Repo,
) -> None:
    repo.commit(namespace={"df": 1})
    ns = {"df": "mine"}
    with pytest.raises(stashdb.NameNotInSnapshot, match="'dff'") as info:
        repo.checkout(only=["df", "dff"], namespace=ns)
    assert info.value.names == ["dff"] and info.value.available == ["df"]
    assert ns == {"df": "mine"}


def test_partial_checkout_uses_the_namespace_class(repo: stashdb.Repo, tmp_path: Path) -> None:
    run_python(
        """
        import stashdb
        class Point:
            def __init__(self, x):
                self.x = x
        p = Point(1)
        stashdb.commit()
        """,
        tmp_path,
    )
    result = run_python(
        """
        import json, stashdb
        class Point:
            def __init__(self, x):
                self.x = x
            def double(self):
                return 2 * self.x
        stashdb.checkout(only=["p"])
        print(json.dumps([isinstance(p, Point), p.double()]))
        """,
        tmp_path,
    )
    assert last_json(result) == [True, 2]


def test_a_name_that_fails_to_unpickle_is_reported_and_the_others_restore(
    tmp_path: Path,
) -> None:
    helper = tmp_path / "shapes.py"
    helper.write_text("class Circle:\n    def __init__(self, r):\n        self.r = r\n")
    run_python(
        """
        import stashdb, shapes
        c = shapes.Circle(2)
        n = 7
        stashdb.commit(exclude=["shapes"])
        """,
        tmp_path,
    )
    helper.unlink()
    result = run_python(
        """
        import stashdb
        c = "before"
        report = stashdb.checkout()
        import json
        print(json.dumps({"c": c, "n": n, "failed": [[f.name, f.reason] for f in report.failed]}))
        """,
        tmp_path,
    )
    out = last_json(result)
    assert out["c"] == "before" and out["n"] == 7
    assert out["failed"][0][0] == "c" and "shapes" in out["failed"][0][1]


def test_checking_out_a_branch_makes_it_current(repo: stashdb.Repo) -> None:
    repo.commit("base", namespace={"x": 1})
    repo.branch("experiment")
    repo.commit("on experiment", namespace={"x": 2}, branch="experiment")
    assert repo.head == "main"
    ns: dict[str, object] = {}
    repo.checkout("experiment", namespace=ns)
    assert repo.head == "experiment" and ns == {"x": 2}
    repo.commit("next", namespace=ns)
    assert [c.message for c in repo.log()] == ["next", "on experiment", "base"]
    assert [c.message for c in repo.log(branch="main")] == ["base"]


def test_checkout_warns_when_python_or_dill_differ(repo: stashdb.Repo) -> None:
    # The lambda is pickled by dill, so restoring it loads dill: its version matters.
    commit = repo.commit(namespace={"x": 1, "f": lambda: 1})
    from sqlalchemy import update

    with raw_connection(repo) as conn:  # as if written elsewhere
        conn.execute(
            update(schema.commits)
            .where(schema.commits.c.id == commit.id)
            .values(python="3.8.10", dill="0.3.1")
        )
    ns: dict[str, object] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = repo.checkout(namespace=ns, trust=True)  # a row changed: unsigned now
    assert ns["x"] == 1 and ns["f"]() == 1  # type: ignore[operator]
    assert len(report.warnings) == 2 and "Python 3.8.10" in report.warnings[0]
    assert {w.category for w in caught} == {stashdb.VersionMismatchWarning}


def test_module_level_functions_use_the_callers_globals(tmp_path: Path) -> None:
    result = run_python(
        """
        import stashdb
        value = [1, 2]
        stashdb.commit("first")
        value.append(3)
        stashdb.checkout(only=["value"])
        import json
        print(json.dumps(value))
        """,
        tmp_path,
    )
    assert last_json(result) == [1, 2]
    assert "created a new store" in result.stderr


def test_a_damaged_chunk_fails_only_its_variable(repo: stashdb.Repo) -> None:
    from sqlalchemy import select, update

    commit = repo.commit(namespace={"good": [1, 2, 3], "bad": "x" * 5000})
    bad_object = bytes.fromhex(commit.entry("bad").object_id or "")
    with raw_connection(repo) as conn:
        chunk = conn.execute(
            select(schema.object_chunks.c.chunk_id).where(
                schema.object_chunks.c.object_id == bad_object
            )
        ).scalar_one()
        data = conn.execute(
            select(schema.chunks.c.data).where(schema.chunks.c.id == chunk)
        ).scalar_one()
        flipped = bytes([data[0] ^ 0xFF]) + data[1:]
        conn.execute(
            update(schema.chunks).where(schema.chunks.c.id == chunk).values(data=flipped)
        )
    ns: dict[str, object] = {}
    report = repo.checkout(namespace=ns)
    assert ns == {"good": [1, 2, 3]}
    assert [f.name for f in report.failed] == ["bad"]
    assert "damaged" in report.failed[0].reason and "'bad'" in report.failed[0].reason
    with pytest.raises(stashdb.CorruptChunk) as info:
        repo.at()["bad"]
    assert info.value.name == "bad" and info.value.chunk_id == chunk.hex()


def test_many_small_values_cross_the_read_and_write_batches(repo: stashdb.Repo) -> None:
    ns = {f"v{i}": [i, str(i), {"i": i}] for i in range(700)}
    ns["shared_a"] = ns["shared_b"] = [0]
    first = repo.commit(namespace=ns)
    assert len(first.stored) == 702 and first.entry("shared_a").group == ("shared_b",)
    again = repo.commit(namespace=ns)
    assert again.stored == [] and again.bytes_written == 0
    restored: dict[str, object] = {}
    report = repo.checkout(namespace=restored)
    assert restored == ns and report.ok
    assert restored["shared_a"] is restored["shared_b"]


def test_a_failed_read_ahead_batch_is_read_again_and_fails_nothing_else(
    repo: stashdb.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    values = {"small": 1.5, "big": np.arange(300_000), "other": "x" * 10, "big2": np.ones(400_000)}
    repo.commit(namespace=values)
    from stashdb.storage.reader import Reader

    source = Reader
    real = source.read_many
    calls: list[int] = []

    def flaky(self: object, ids: object, **options: bool) -> object:
        calls.append(1)
        if len(calls) == 2:  # one transient failure, on the read-ahead thread
            raise MemoryError("transient failure reading one batch")
        return real(self, ids, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(source, "read_many", flaky)
    ns: dict[str, object] = {}
    report = repo.checkout(namespace=ns)
    assert report.failed == [] and sorted(report.restored) == sorted(values)
    assert np.array_equal(ns["big"], values["big"]) and ns["small"] == 1.5  # type: ignore[arg-type]
