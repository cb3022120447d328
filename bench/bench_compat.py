"""Benchmark: the drop-in replacements (stashdb.compat) against the tools they replace (issue #15).

A notebook-like workspace lives in ``__main__`` of a worker script, a fresh
process per run: pandas frames (numeric and string columns), a large float
array, a list of small dicts, small values, a function and a class instance.
Each run saves it with four tools, into fresh files: the real
``sessionstash.save_workspace`` and ``dill.dump_module``, and ours,
``stashdb.compat.sessionstash.save_workspace`` and
``stashdb.compat.dill_session.dump_module`` (each into its own store). Then,
three times over, one small variable changes and every tool saves again.
The order of the tools alternates from run to run.

Imports happen before anything is timed, for every tool. stashdb's first
store in a process also imports SQLAlchemy and Alembic: that one-time cost is
paid by a throwaway store before timing, and printed on its own.

Usage: python bench/bench_compat.py [--scale 1] [--runs 5]
(``--scale 0.1`` for a quick look). Prints medians and ratios (theirs / ours).
Not a test: docs/performance.md records the numbers and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WORKER = r'''
import contextlib, io, json, os, sys, time
from pathlib import Path
import numpy as np, pandas as pd
import dill, sessionstash
import stashdb
from stashdb.compat import dill_session as our_dill, sessionstash as our_ss

_work, _scale, _order, _changes = (
    Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4]))
_rng = np.random.default_rng(0)
_rows = int(2_000_000 * _scale)
sales = pd.DataFrame({
    "amount": _rng.random(_rows) * 100,
    "units": _rng.integers(0, 1_000, _rows),
    "city": _rng.choice(["paris", "lima", "oslo", "pune", "kyiv", "accra"], _rows),
})
features = pd.DataFrame(_rng.random((int(500_000 * _scale), 8)),
                        columns=[f"f{i}" for i in range(8)])
daily = sales.groupby("city").agg(total=("amount", "sum"), units=("units", "sum"))
weights = _rng.random(int(8_000_000 * _scale))
records = [{"id": i, "name": f"user {i}", "score": i * 0.5} for i in range(int(200_000 * _scale))]
config = {"lr": 0.01, "epochs": 10, "tags": ["a", "b"]}
threshold = 0.5
small = 0

class Model:
    def __init__(self, w):
        self.w = w
    def predict(self, x):
        return x * self.w

def score(x):
    return x * threshold

model = Model(2.0)
_live_mb = (sum(int(f.memory_usage(deep=True).sum()) for f in (sales, features, daily))
            + weights.nbytes) / 1e6

# The one-time cost of stashdb's first store in a process (SQLAlchemy, Alembic).
_start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    our_ss.save_workspace(_work / "warm.db", namespace={"x": 1})
_first_store_s = time.perf_counter() - _start
stashdb.close_all()

def _save(tool):
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        if tool == "sessionstash":
            sessionstash.save_workspace(_work / "ws.dill", namespace=globals())
        elif tool == "stashdb sessionstash":
            our_ss.save_workspace(_work / "ws.db", namespace=globals())
        elif tool == "dill":
            dill.dump_module(str(_work / "session.pkl"))
        else:
            our_dill.dump_module(str(_work / "session.db"))
    return time.perf_counter() - start

_times = {tool: [] for tool in _order}
for _step in range(1 + _changes):
    if _step:
        small += 1  # one small variable changes between saves
    for _tool in _order:
        _times[_tool].append(_save(_tool))
stashdb.close_all()
_sizes = {name: os.path.getsize(_work / name) for name in
          ("ws.dill", "ws.db", "session.pkl", "session.db")}
print(json.dumps({"times": _times, "live_mb": _live_mb, "first_store_s": _first_store_s,
                  "sizes": _sizes}))
'''

TOOLS = ["sessionstash", "stashdb sessionstash", "dill", "stashdb dill_session"]
PAIRS = [("sessionstash", "stashdb sessionstash"), ("dill", "stashdb dill_session")]


def run_worker(script: Path, scale: float, order: list[str], changes: int, env: dict[str, str]
               ) -> Any:
    work = Path(tempfile.mkdtemp(prefix="stashdb-compat-"))
    try:
        done = subprocess.run(
            [sys.executable, str(script), str(work), str(scale), ",".join(order), str(changes)],
            cwd=work, check=True, capture_output=True, text=True, env=env,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--changes", type=int, default=3,
                        help="saves after a small change, per run")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="stashdb-bench-compat-"))
    script = home / "worker.py"
    script.write_text(WORKER)
    # Commits are signed: with a key of the benchmark's own, never the user's.
    env = {**os.environ, "STASHDB_CONFIG_DIR": str(home / "keys")}
    results = []
    try:
        for number in range(args.runs):
            order = TOOLS if number % 2 == 0 else TOOLS[::-1]
            results.append(run_worker(script, args.scale, order, args.changes, env))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    first = {t: med([r["times"][t][0] for r in results]) for t in TOOLS}
    later = {t: med([s for r in results for s in r["times"][t][1:]]) for t in TOOLS}
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    live = med([r["live_mb"] for r in results])
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"scale {args.scale} (live data {live:.0f} MB); medians of {args.runs} runs "
          f"(later saves: {args.changes} a run)")
    print(f"\n{'save':<34}{'theirs':>10}{'ours':>10}{'theirs/ours':>13}")
    for theirs, ours in PAIRS:
        for label, table in (("first", first), ("after a small change", later)):
            ratio = table[theirs] / table[ours]
            print(f"{theirs + ', ' + label:<34}{table[theirs]:>9.3f}s{table[ours]:>9.3f}s"
                  f"{ratio:>12.1f}x")
    print(f"\nstashdb's first store in a process (imports SQLAlchemy, Alembic; not in the "
          f"figures above): {med([r['first_store_s'] for r in results]):.3f} s")
    sizes = {name: med([r["sizes"][name] for r in results]) / 1e6 for name in results[0]["sizes"]}
    print(f"after {1 + args.changes} saves: sessionstash file {sizes['ws.dill']:.0f} MB (the "
          f"last save only), our store {sizes['ws.db']:.0f} MB (every save); dill file "
          f"{sizes['session.pkl']:.0f} MB, our store {sizes['session.db']:.0f} MB")
    print("targets (issue #15): first save >= 5x faster, later saves >= 10x")


if __name__ == "__main__":
    main()
