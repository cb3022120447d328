"""History bundles: `stashdb export` / `import`, Repo.export / import_bundle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import stashdb
from conftest import raw_connection


def _count(repo: stashdb.Repo, table: str) -> int:
    with raw_connection(repo) as conn:
        return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar())


def _three(repo: stashdb.Repo) -> dict[str, Any]:
    ns: dict[str, Any] = {"arr": np.arange(400_000, dtype=np.float64), "x": 1, "s": "text"}
    repo.commit("one", namespace=ns)
    repo.tag("v1", message="the first")
    ns["x"] = 2
    ns["arr"] = ns["arr"] + 1
    repo.commit("two", namespace=ns)
    ns["x"] = 3
    repo.commit("three", namespace=ns)
    return ns


def test_a_bundle_carries_history_and_refs_to_any_store(repo: stashdb.Repo, tmp_path: Path) -> None:
    ns = _three(repo)
    sent = repo.export(["main", "v1"], tmp_path / "all.bundle")
    assert sent.commits == 3 and sent.bytes == (tmp_path / "all.bundle").stat().st_size
    other = stashdb.init(tmp_path / "other")
    added = other.import_bundle(tmp_path / "all.bundle")
    assert (added.commits, added.objects) == (3, _count(repo, "objects"))
    assert [c.id for c in other.log()] == [c.id for c in repo.log()]
    assert other.resolve("v1") == repo.resolve("v1")
    assert other.at("HEAD")["x"] == 3 and np.array_equal(other.at("HEAD")["arr"], ns["arr"])
    assert other.verify().ok
    # Importing it again adds nothing.
    again = other.import_bundle(tmp_path / "all.bundle")
    assert (again.commits, again.objects, again.chunks) == (0, 0, 0)
    assert {r.what for r in again.refs} == {"up to date"}


def test_a_range_sends_only_what_it_adds(repo: stashdb.Repo, tmp_path: Path) -> None:
    _three(repo)
    repo.export("v1", tmp_path / "base.bundle")
    repo.export("v1..main", tmp_path / "delta.bundle")
    full = repo.export("main", tmp_path / "full.bundle")
    delta_size = (tmp_path / "delta.bundle").stat().st_size
    assert delta_size < full.bytes
    other = stashdb.init(tmp_path / "other")
    with pytest.raises(stashdb.TransferRefused, match="lacks"):
        other.import_bundle(tmp_path / "delta.bundle")
    assert other.log(all=True) == []  # nothing stored
    other.import_bundle(tmp_path / "base.bundle")
    added = other.import_bundle(tmp_path / "delta.bundle")
    assert added.commits == 2
    assert other.at("main")["x"] == 3 and other.verify().ok


def test_importing_into_a_store_that_has_part_of_it_adds_the_rest(tmp_path: Path) -> None:
    source = stashdb.init(tmp_path / "source")
    _three(source)
    partial = stashdb.init(tmp_path / "partial")
    source.export("v1", tmp_path / "v1.bundle")
    partial.import_bundle(tmp_path / "v1.bundle")
    chunks_before = _count(partial, "chunks")
    source.export("main", tmp_path / "main.bundle")
    added = partial.import_bundle(tmp_path / "main.bundle")
    assert added.commits == 2
    assert added.chunks == _count(source, "chunks") - chunks_before
    assert _count(partial, "chunks") == _count(source, "chunks")


def test_a_branch_that_went_elsewhere_is_kept_and_said(tmp_path: Path) -> None:
    source = stashdb.init(tmp_path / "source")
    _three(source)
    source.export("main", tmp_path / "main.bundle")
    mine = stashdb.init(tmp_path / "mine")
    mine.commit("my own", namespace={"y": 1})
    mine_tip = mine.resolve("main")
    added = mine.import_bundle(tmp_path / "main.bundle")
    kept = [r for r in added.refs if r.name == "main"]
    assert kept and kept[0].what == "kept" and "lacks" in kept[0].why
    assert mine.resolve("main") == mine_tip
    assert mine.show(source.resolve("main")).message == "three"  # the commits are in


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_bundle_is_refused_whole(tmp_path: Path, damage: str) -> None:
    source = stashdb.init(tmp_path / "source")
    _three(source)
    source.export("main", tmp_path / "main.bundle")
    data = bytearray((tmp_path / "main.bundle").read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.bundle").write_bytes(bytes(data))
    other = stashdb.init(tmp_path / "other")
    with pytest.raises(stashdb.BadBundle):
        other.import_bundle(tmp_path / "bad.bundle")
    assert _count(other, "chunks") == 0 and other.log(all=True) == []


def test_a_session_state_is_not_a_history(repo: stashdb.Repo, tmp_path: Path) -> None:
    repo.commit("one", namespace={"x": 1})
    (tmp_path / "state.bundle").write_bytes(repo.bundle())
    with pytest.raises(stashdb.BadBundle, match="session"):
        stashdb.init(tmp_path / "other").import_bundle(tmp_path / "state.bundle")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stashdb", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_the_command_line_exports_and_imports(tmp_path: Path) -> None:
    source = stashdb.init(tmp_path / "source")
    _three(source)
    source.close()
    done = _cli("export", "main", "v1", "-o", str(tmp_path / "x.bundle"), "--store",
                str(tmp_path / "source"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 commits" in done.stdout
    (tmp_path / "dest").mkdir()
    done = _cli("import", str(tmp_path / "x.bundle"), cwd=tmp_path / "dest")
    assert done.returncode == 0, done.stderr
    assert "main: new branch" in done.stdout and "v1: new tag" in done.stdout
    logged = _cli("log", "--all", cwd=tmp_path / "dest")
    assert "three" in logged.stdout and "one" in logged.stdout
    bad = _cli("import", str(tmp_path / "missing.bundle"), cwd=tmp_path / "dest")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    # Where there is no store yet, a file that is no bundle leaves none behind.
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.bin").write_bytes(b"not a bundle")
    bad = _cli("import", str(tmp_path / "junk.bin"), cwd=tmp_path / "empty")
    assert bad.returncode == 1 and "not a sound stashdb bundle" in bad.stderr
    assert bad.stderr.count("\n") == 1 and not (tmp_path / "empty" / ".stashdb").exists()
    bad = _cli("export", "nosuch", "-o", str(tmp_path / "y.bundle"), "--store",
               str(tmp_path / "source"), cwd=tmp_path)
    assert bad.returncode == 1 and not (tmp_path / "y.bundle").exists()


def test_a_layout_numbered_out_of_order_is_refused(tmp_path: Path) -> None:
    from test_session_edges import _edit_json, _forge, _records

    source = stashdb.init(tmp_path / "source")
    source.commit("big", namespace={"arr": np.random.default_rng(0).random(1_500_000)})
    source.export("main", tmp_path / "main.bundle")
    records = _records((tmp_path / "main.bundle").read_bytes())

    def rows_of_a_long_part(objects: list[Any]) -> list[Any]:
        layout = max(objects, key=lambda o: len(o["layout"]))["layout"]
        part = max({r[0] for r in layout}, key=lambda p: sum(r[0] == p for r in layout))
        return [row for row in layout if row[0] == part]

    def swap_seqs(objects: list[Any]) -> None:
        first, second = rows_of_a_long_part(objects)[:2]
        first[1], second[1] = second[1], first[1]  # same chunks listed, read in another order

    def repeat_seq(objects: list[Any]) -> None:
        first, second = rows_of_a_long_part(objects)[:2]
        second[1] = first[1]

    for change in (swap_seqs, repeat_seq):
        (tmp_path / "bad.bundle").write_bytes(_forge(_edit_json(records, b"O", change)))
        other = stashdb.init(tmp_path / f"other-{change.__name__}")
        with pytest.raises(stashdb.BadBundle, match=r"out of order|not what its id says"):
            other.import_bundle(tmp_path / "bad.bundle")
        assert _count(other, "objects") == 0


def test_a_commit_whose_parent_is_nowhere_is_refused(tmp_path: Path) -> None:
    from test_session_edges import _edit_json, _forge, _records

    source = stashdb.init(tmp_path / "source")
    _three(source)
    source.export("v1..main", tmp_path / "delta.bundle")
    records = _records((tmp_path / "delta.bundle").read_bytes())

    def no_base(header: dict[str, Any]) -> None:
        header["base"] = []
        header["refs"] = [r for r in header["refs"] if r[2] in {c["id"] for c in header["commits"]}]

    (tmp_path / "bad.bundle").write_bytes(_forge(_edit_json(records, b"H", no_base)))
    other = stashdb.init(tmp_path / "other")
    with pytest.raises((stashdb.BadBundle, stashdb.TransferRefused)):
        other.import_bundle(tmp_path / "bad.bundle")
    assert other.log(all=True) == []
