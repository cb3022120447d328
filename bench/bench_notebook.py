"""Benchmark: what auto-snapshot adds to each cell of a ~1.3 GB notebook (issue #6).

A real IPython shell (``InteractiveShell``) in a fresh process builds the
notebook's state — an 800 MB float array, a 4M-row DataFrame with numeric and
string columns, 400k small dicts and an alias to them — then runs the same
cells twice over: in one process without stashdb, in another with
``%load_ext stashdb`` and ``%stash auto on``. A cell's overhead is its median
time with auto-snapshot minus its median time without (each cell runs
``--repeat`` times; the run order of the two processes alternates).

Cells: a small variable changes; one DataFrame column changes; the DataFrame is
only read; then, with stashdb, a checkout back to the state before the column
change, and an undo. Also reported: the store's size against the live data
(RSS growth while the data was built) and peak RSS with and without stashdb.

Usage: python bench/bench_notebook.py [--scale 1] [--runs 3] [--repeat 3]
(``--scale 0.1`` for a quick look). Not a test: docs/performance.md has the
numbers and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WORKER = r'''
import json, os, resource, sys, time
from pathlib import Path
from IPython.core.interactiveshell import InteractiveShell

with_stashdb, scale, repeat = sys.argv[1] == "1", float(sys.argv[2]), int(sys.argv[3])
shell = InteractiveShell.instance()

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1000
    return 0.0

def run(cell):
    start = time.perf_counter()
    result = shell.run_cell(cell, store_history=True)
    elapsed = time.perf_counter() - start
    if not result.success:
        error = result.error_in_exec or result.error_before_exec
        raise SystemExit(f"cell failed: {cell!r}: {error}")
    return elapsed

run("import numpy as np, pandas as pd")
before = rss_mb()
run(f"""
rng = np.random.default_rng(0)
arr = rng.random(int(100_000_000 * {scale}))
rows = int(4_000_000 * {scale})
df = pd.DataFrame({{
    "x": rng.random(rows),
    "n": rng.integers(0, 1_000_000, rows),
    "city": rng.choice(["paris", "lima", "oslo", "pune", "kyiv", "accra"], rows),
}})
n_records = int(400_000 * {scale})
records = [{{"id": i, "name": f"user {{i}}", "score": i * 0.5}} for i in range(n_records)]
alias = records
small = 0
""")
live_mb = rss_mb() - before
out = {"live_mb": live_mb}
if with_stashdb:
    run("%load_ext stashdb")
    out["first_snapshot_s"] = run("%stash auto on --branch bench")
    run("%stash tag before")
CELLS = {
    "small variable": "small = small + 1",
    "one column": "df['x'] = df['x'] * 1.0001",
    "read the frame": "total = float(df['n'].sum())",
}
times = {name: [] for name in CELLS}
for _ in range(repeat):
    for name, cell in CELLS.items():
        times[name].append(run(cell))
out["times"] = times
if with_stashdb:
    out["checkout_s"] = run("%stash checkout before")
    run("small = -1")
    out["undo_s"] = run("%stash undo")
    assert shell.user_ns["small"] == 0, shell.user_ns["small"]
    store = Path(".stashdb")
    out["store_mb"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e6
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
print(json.dumps(out))
'''


def run_worker(script: Path, with_stashdb: bool, scale: float, repeat: int) -> Any:
    work = Path(tempfile.mkdtemp(prefix="stashdb-nb-"))
    try:
        done = subprocess.run(
            [sys.executable, str(script), "1" if with_stashdb else "0", str(scale), str(repeat)],
            cwd=work, check=True, capture_output=True, text=True,
        )
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    script = Path(tempfile.mkdtemp(prefix="stashdb-nbw-")) / "worker.py"
    script.write_text(WORKER)

    results: dict[bool, list[Any]] = {False: [], True: []}
    for number in range(args.runs):
        for with_stashdb in ((False, True) if number % 2 == 0 else (True, False)):
            results[with_stashdb].append(run_worker(script, with_stashdb, args.scale, args.repeat))

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def cell_median(with_stashdb: bool, cell: str) -> float:
        return med([t for r in results[with_stashdb] for t in r["times"][cell]])

    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    live = med([r["live_mb"] for r in results[False] + results[True]])
    ours = results[True]
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"scale {args.scale} (live data {live:.0f} MB); medians of {args.runs} runs x "
          f"{args.repeat} repeats")
    print(f"\n{'cell':<18}{'without':>10}{'with':>10}{'added':>12}")
    for cell in ours[0]["times"]:
        without, with_ = cell_median(False, cell), cell_median(True, cell)
        print(f"{cell:<18}{without * 1000:>8.1f}ms{with_ * 1000:>8.1f}ms"
              f"{(with_ - without) * 1000:>10.1f}ms")
    print(f"\nfirst snapshot (%stash auto on): {med([r['first_snapshot_s'] for r in ours]):.2f} s")
    print(f"checkout to before the column changes: {med([r['checkout_s'] for r in ours]):.2f} s")
    print(f"undo of a small change: {med([r['undo_s'] for r in ours]) * 1000:.1f} ms")
    store = med([r["store_mb"] for r in ours])
    print(f"store after the notebook: {store:.0f} MB = {store / live:.2f}x the live data")
    peak_without = med([r["peak_rss_mb"] for r in results[False]])
    peak_with = med([r["peak_rss_mb"] for r in ours])
    print(f"peak RSS: {peak_with:.0f} MB with stashdb, {peak_without:.0f} MB without "
          f"({peak_with / peak_without:.2f}x)")


if __name__ == "__main__":
    main()
