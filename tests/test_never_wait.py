"""Snapshots that never make a cell wait: forked children, in order, crash-proof (issue 16).

Every test runs a real IPython shell in a fresh interpreter (forking the test
runner itself would copy pytest), and checks what landed in a real SQLite
store, read back by another process.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import stashdb
from conftest import last_json, run_python
from stashdb.forked import can_fork
from stashdb.pickling.fingerprint import fingerprint

pytestmark = pytest.mark.skipif(not can_fork(), reason="forked snapshots are Linux-only")

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

SHELL = """
    import json, time
    import stashdb
    from IPython.core.interactiveshell import InteractiveShell
    import stashdb.ipython.magics as magics

    shell = InteractiveShell.instance()
    def run(cell):
        result = shell.run_cell(cell, store_history=True)
        assert result.success, (cell, result.error_in_exec)
    run("%load_ext stashdb")
    run("%stash auto on --branch nb")
    session = magics._loaded[id(shell)].session
"""


def shell_script(body: str) -> str:
    return textwrap.dedent(SHELL) + textwrap.dedent(body)


def cell_number(message: str) -> int:
    found = re.match(r"cell \[(\d+)\]", message)
    assert found, message
    return int(found.group(1))


def test_each_snapshot_is_the_state_its_cell_left_while_the_next_cell_mutates_it(
    tmp_path: Path,
) -> None:
    result = run_python(shell_script("""
        run("import numpy as np, pandas as pd\\n"
            "big = list(range(2_000_000))\\n"
            "df = pd.DataFrame({'a': np.arange(1_000_000, dtype=float), 'b': 1})")
        session.flush()
        run("big.append(-1); df.loc[0, 'a'] = 0.5")          # the snapshot under test
        run("big.append(-2); big[0] = 'changed'; df['a'] *= 2; df.loc[1, 'a'] = 7.0")
        background = session.background
        session.flush()
        print(json.dumps({"background": background, "cost": session.last_cost.background}))
    """), tmp_path)
    assert last_json(result) == {"background": "fork", "cost": "fork"}
    repo = stashdb.open(tmp_path)
    by_cell = {cell_number(c.message): c for c in repo.log("nb") if c.message.startswith("cell")}
    first = repo.at(by_cell[4].id)  # [1] loaded the extension, [2] turned auto on
    assert first["big"][-1] == -1 and first["big"][0] == 0 and len(first["big"]) == 2_000_001
    assert first["df"]["a"].iloc[0] == 0.5 and first["df"]["a"].iloc[1] == 1.0
    second = repo.at(by_cell[5].id)
    assert second["big"][-2:] == [-1, -2] and second["big"][0] == "changed"
    assert second["df"]["a"].iloc[0] == 1.0 and second["df"]["a"].iloc[1] == 7.0
    assert repo.verify().ok


def test_a_burst_of_100_quick_cells_lands_in_order_each_commit_its_cells_state(
    tmp_path: Path,
) -> None:
    """Small changes are pickled in the cell, large ones forked; under a burst a waiting
    snapshot is replaced by the next, but every commit equals the state its cell left."""
    run_python(shell_script("""
        run("big = list(range(300_000))\\nx = -1")
        for i in range(100):
            run(f"big.append({i})" if i % 3 == 0 else f"x = {i}")
        session.flush()
    """), tmp_path)
    repo = stashdb.open(tmp_path)
    commits = [c for c in reversed(repo.log("nb")) if c.message.startswith("cell")]
    numbers = [cell_number(c.message) for c in commits]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for older, newer in itertools.pairwise(commits):
        assert newer.parents == (older.id,)  # one line of history, in order
    assert numbers[-1] == 103  # the last cell's state always lands
    first_cell = 4  # [1] loaded the extension, [2] turned auto on, [3] built big and x
    for commit in commits:
        step = cell_number(commit.message) - first_cell
        if step < 0:
            continue
        expect_x = max((i for i in range(step + 1) if i % 3), default=-1)
        expect_tail = [i for i in range(step + 1) if i % 3 == 0]
        state = repo.at(commit.id)
        assert state["x"] == expect_x, commit.message
        assert state["big"][300_000:] == expect_tail, commit.message
    assert repo.verify().ok


def test_kill_9_of_the_kernel_mid_snapshot_leaves_the_store_verifiable(tmp_path: Path) -> None:
    script = tmp_path / "kernel.py"
    script.write_text(shell_script("""
        run("small = 1")
        run("small = 2")
        session.flush()
        print("written", flush=True)
        run("import numpy as np\\nhuge = np.random.default_rng(0).random(60_000_000)")
        print("forked", flush=True)
        time.sleep(60)
    """))
    kernel = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the kill takes the child too
    )
    assert kernel.stdout is not None
    try:
        lines = iter(kernel.stdout.readline, "")
        assert "written" in (line.strip() for line in lines)
        assert next(lines).strip() == "forked"
        time.sleep(0.3)  # the child is pickling, hashing, writing 480 MB
    finally:
        os.killpg(kernel.pid, signal.SIGKILL)
        kernel.wait(timeout=30)
    repo = stashdb.open(tmp_path)
    report = repo.verify()
    assert report.ok, report
    history = {c.message: c for c in repo.log("nb")}
    assert repo.at(history["cell [4]: small = 2"].id)["small"] == 2
    assert repo.at(history["cell [3]: small = 1"].id)["small"] == 1


def test_a_kernel_with_busy_threads_still_snapshots(tmp_path: Path) -> None:
    """BLAS threads, a thread pool and a thread printing hold locks while cells fork."""
    result = run_python(shell_script("""
        import threading, sys
        from concurrent.futures import ThreadPoolExecutor
        import numpy as np
        stop = threading.Event()
        lock = threading.Lock()
        def busy():
            a = np.random.default_rng(0).random((300, 300))
            while not stop.is_set():
                with lock:
                    a @ a  # BLAS, with its own threads
                print("", end="", file=sys.stderr, flush=True)
        pool = ThreadPoolExecutor(4)
        for _ in range(4):
            pool.submit(busy)
        run("big = list(range(200_000))")
        for i in range(10):
            run(f"big.append({i})")
        started = time.monotonic()
        session.flush()
        waited = time.monotonic() - started
        busy_kind = session.last_cost.background
        stop.set()
        pool.shutdown()
        idle = ThreadPoolExecutor(2)  # threads that wait: forking is safe again
        idle.submit(print, "", end="").result()
        run("big.append('idle')")
        session.flush()
        print(json.dumps({"waited": waited, "busy": busy_kind,
                          "idle": session.last_cost.background}))
    """), tmp_path)
    found = last_json(result)
    assert found["waited"] < 60
    assert found["busy"] == "thread"  # a thread may be inside BLAS: pickled in the cell
    assert found["idle"] == "fork"
    state = stashdb.open(tmp_path).at("nb")
    assert state["big"][200_000:] == [*range(10), "idle"]


def test_a_read_only_cell_is_proved_unchanged_by_fingerprint_not_pickled(tmp_path: Path) -> None:
    result = run_python(shell_script("""
        run("import numpy as np, pandas as pd\\n"
            "df = pd.DataFrame({'a': np.arange(500_000, dtype=float),\\n"
            "                   's': [f'k{i % 100}' for i in range(500_000)]})")
        session.flush()
        commits = len(stashdb.log(branch="nb"))
        run("df.head()")
        session.flush()
        read_only = session.last_cost
        run("df.loc[3, 's'] = 'changed'")
        session.flush()
        changed = session.last_cost
        print(json.dumps({"read_only": read_only.as_dict(), "changed": changed.as_dict(),
                          "new_commits": len(stashdb.log(branch="nb")) - commits}))
    """), tmp_path)
    found = last_json(result)
    assert found["read_only"]["proved_unchanged"] == 1
    assert found["read_only"]["pickled"] == 0
    assert found["read_only"]["commit"] is None  # nothing changed: no commit
    assert found["changed"]["proved_unchanged"] == 0 and found["changed"]["pickled"] == 1
    assert found["new_commits"] == 1
    assert stashdb.open(tmp_path).at("nb")["df"].loc[3, "s"] == "changed"


def test_fingerprints_see_every_change_of_arrays_and_frames() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"]})
    same = pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"]})
    assert fingerprint(frame) == fingerprint(same)
    variants = [
        frame.assign(a=[1.0, 3.0]), frame.assign(s=["x", "z"]), frame.rename(columns={"a": "b"}),
        frame.set_axis([5, 6]), frame.astype({"a": "float32"}),
    ]
    assert len({fingerprint(v) for v in variants} | {fingerprint(frame)}) == len(variants) + 1
    array = np.arange(12, dtype=np.int64)
    assert fingerprint(array) != fingerprint(array.reshape(3, 4))
    assert fingerprint(array) != fingerprint(array.astype(np.int32))
    assert fingerprint(array[::2]) == fingerprint(array.copy()[::2])  # strided: in-band
    assert fingerprint(array[::2]) != fingerprint(array[1::2])
    assert fingerprint([1, 2]) is None  # plain containers are always pickled
    assert fingerprint(np.array([object()], dtype=object)) is None


def test_status_shows_where_the_last_snapshot_spent_its_time(tmp_path: Path) -> None:
    result = run_python(shell_script("""
        run("import numpy as np\\narr = np.ones(3_000_000)")
        run("%stash status")
    """), tmp_path)
    assert "in the cell" in result.stdout and "pickling" in result.stdout
    cli = subprocess.run(
        [sys.executable, "-m", "stashdb", "status", "--json"], cwd=tmp_path,
        capture_output=True, text=True, check=True,
    )
    last = json.loads(cli.stdout)["last_snapshots"][0]
    assert last["branch"] == "nb" and last["background"] == "fork" and last["commit"]
    text = subprocess.run(
        [sys.executable, "-m", "stashdb", "status"], cwd=tmp_path,
        capture_output=True, text=True, check=True,
    ).stdout
    assert "last snapshot" in text and "hashing" in text


def test_a_child_hashes_after_the_parent_started_blake3s_threads(tmp_path: Path) -> None:
    """BLAKE3's Rust thread pool is dead in a forked child: the child must not wait for it."""
    result = run_python(shell_script("""
        import numpy as np
        stashdb.commit(namespace={"warm": np.arange(1_000_000.0)}, branch="other")  # the pool runs
        run("import numpy as np\\narr = np.arange(2_000_000.0)")
        run("arr += 1")
        started = time.monotonic()
        session.flush()
        print(json.dumps({"waited": time.monotonic() - started,
                          "kind": session.last_cost.background}))
    """), tmp_path)
    found = last_json(result)
    assert found["kind"] == "fork" and found["waited"] < 60
    assert stashdb.open(tmp_path).at("nb")["arr"][0] == 1.0


def test_small_cells_while_a_snapshot_waits_amend_it_instead_of_forking(tmp_path: Path) -> None:
    result = run_python(shell_script("""
        run("big = list(range(3_000_000))\\ny = 'gone soon'")   # [3]: its child works a while
        run("big.append(-1)")                                  # [4]: forked, waits its turn
        for i in range(5):                                     # [5]..[9]: numbers only
            run(f"x = {i}" if i != 2 else "del y")
        session.flush()
        print(json.dumps([label for label, cost in session.recent_costs()]))
    """), tmp_path)
    labels = last_json(result)
    # %stash auto on's, the big cell's, and the amended one: no fork per small cell
    assert labels == ["auto-snapshot on", "cell [3]", "cell [9] (and 5 cells before, from cell [4])"]
    repo = stashdb.open(tmp_path)
    state = repo.at("nb")
    assert state["x"] == 4 and "y" not in state and state["big"][-1] == -1
    assert repo.log(branch="nb")[0].message.startswith("cell [9]: x = 4 (and 5 cells before")
