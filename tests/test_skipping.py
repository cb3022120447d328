"""One bad value never fails a commit; every skipped name is reported with its reason."""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path

import stashdb
from conftest import last_json, run_python


class ExplodingReduce:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


def nest(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


def test_unpicklable_values_are_skipped_with_type_and_reason(
    repo: stashdb.Repo, tmp_path: Path
) -> None:
    handle = (tmp_path / "data.txt").open("w")
    sock = socket.socket()
    conn = sqlite3.connect(":memory:")
    ns = {
        "gen": (i for i in range(3)),
        "lock": threading.Lock(),
        "handle": handle,
        "sock": sock,
        "conn": conn,
        "bad": ExplodingReduce(),
        "deep": nest(100_000),
        "fine": [1, 2, 3],
    }
    try:
        commit = repo.commit("with junk", namespace=ns)
    finally:
        handle.close()
        sock.close()
        conn.close()
    skipped = {s.name: s for s in commit.skipped}
    assert set(skipped) == {"gen", "lock", "handle", "sock", "conn", "bad", "deep"}
    assert skipped["gen"].type_name == "generator"
    assert skipped["lock"].type_name == "_thread.lock"
    assert skipped["sock"].type_name == "socket.socket"
    assert "boom" in skipped["bad"].reason
    assert "deep" in skipped["deep"].reason or "recursion" in skipped["deep"].reason
    assert all(s.reason for s in skipped.values())
    assert commit.stored == ["fine"]


def test_the_rest_restores_and_skipped_names_are_left_alone(tmp_path: Path) -> None:
    run_python(
        """
        import socket, threading, stashdb
        gen = (i for i in range(3))
        lock = threading.Lock()
        handle = open("notes.txt", "w")
        sock = socket.socket()
        kept = {"answer": 42}
        c = stashdb.commit("mixed")
        print(sorted(s.name for s in c.skipped))
        """,
        tmp_path,
    )
    result = run_python(
        """
        import stashdb
        lock = "mine"
        report = stashdb.checkout()
        import json  # after: an exact checkout removes names the snapshot lacks
        print(json.dumps({"kept": kept, "lock": lock,
                          "skipped": sorted(s.name for s in report.skipped)}))
        """,
        tmp_path,
    )
    assert last_json(result) == {
        "kept": {"answer": 42},
        "lock": "mine",
        "skipped": ["gen", "handle", "lock", "sock"],
    }


def test_default_exclusions_and_patterns(repo: stashdb.Repo) -> None:
    ns = {
        "__builtins__": {}, "_private": 1, "In": [], "Out": {}, "exit": None,
        "get_ipython": None, "df": 1, "df_raw": 2, "model": 3, "tmp_x": 4,
    }
    assert repo.commit(namespace=ns).names == ["df", "df_raw", "model", "tmp_x"]
    assert repo.commit(namespace=ns, exclude=["tmp_*"]).names == ["df", "df_raw", "model"]
    assert repo.commit(namespace=ns, only=["df*"]).names == ["df", "df_raw"]
    assert repo.commit(namespace=ns, only=["df", "_private"]).names == ["_private", "df"]


def test_only_pattern_matching_nothing_is_an_error(repo: stashdb.Repo) -> None:
    import pytest

    with pytest.raises(stashdb.NameNotInNamespace, match="'dff'"):
        repo.commit(namespace={"df": 1}, only=["dff"])
    assert repo.log() == []
