"""Benchmark: what auto-snapshot adds to each cell of a notebook (issues #6 and #16).

Every cell runs in a real IPython ``InteractiveShell`` in a fresh process:
once in a process without stashdb, once in one with ``%load_ext stashdb`` and
``%stash auto on``, the order of the two alternating from run to run. For each
cell it reports:

- ``plain``: its median wall time without stashdb;
- ``with``: its median wall time with auto-snapshot on;
- ``in cell``: the median time the cell spent inside stashdb's hooks (what the
  user waits for, measured directly; the difference of two wall times of a
  2-second cell is mostly noise);
- ``background``: what the cell's snapshot took off the user's path (a forked
  child, or the writer thread), from `ShellSession.recent_costs`, and how it
  split into pickling, hashing and writing;

and per notebook the 95th percentile of the in-cell overhead, the store's size
and peak memory with and without.

Two modes:

- the built-in cases of issue #16 (default): a 600 MB workspace (a 3 M-row
  frame, a 40 M-float array, 200 000 records) read, appended to, changed in
  place; a cell creating 800 MB; 20 read-only cells over a 1 M-row frame; one
  dict appended to a 100 000-record list; a 1 GB frame read and mutated; a cell
  creating 1 GB; then a checkout and an undo;
- ``--replay NOTEBOOK.ipynb`` (any number): runs each code cell in order.
  ``bench/notebooks/`` holds three of different shapes (frame-heavy,
  array-heavy, many small objects).

``--kernel-env 'PYTHONMALLOC=malloc GLIBC_TUNABLES=glibc.malloc.hugetlb=1'``
runs both processes with those variables (docs/jupyter.md: what it does to
forking a workspace of many small objects).

Usage: python bench/bench_notebook.py [--scale 1] [--runs 3]
       python bench/bench_notebook.py --replay bench/notebooks/*.ipynb --runs 3
Not a test: docs/performance.md has the numbers and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WORKER = r'''
import json, resource, sys, time
from pathlib import Path
from IPython.core.interactiveshell import InteractiveShell

cells, with_stashdb = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2] == "1"
shell = InteractiveShell.instance()

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1000
    return 0.0

def run(cell):
    start = time.perf_counter()
    result = shell.run_cell(cell, store_history=True, silent=False)
    elapsed = time.perf_counter() - start
    if not result.success:
        error = result.error_in_exec or result.error_before_exec
        raise SystemExit(f"cell failed: {cell!r}: {error!r}")
    return elapsed

session = None
if with_stashdb:
    run("%load_ext stashdb")
    run("%stash auto on --branch bench")
    import stashdb.ipython.magics as magics
    session = magics._loaded[id(shell)].session
else:
    run("pass")  # the same execution counts with and without
    run("pass")
out = {"cells": [], "extra": {}}
for cell in cells:
    if cell.startswith("#extra "):  # a measurement of stashdb itself, not a notebook cell
        name, code = cell[len("#extra "):].split("\n", 1)
        if with_stashdb:
            out["extra"][name] = run(code)
        continue
    number = shell.execution_count
    wall = run(cell)
    out["cells"].append({"number": number, "wall": wall, "rss": rss_mb(),
                         "hook": session.last_in_cell if session else 0.0})
if session is not None:
    session.flush()
    out["costs"] = [{"label": label, **cost.as_dict()} for label, cost in session.recent_costs()]
    store = Path(".stashdb")
    out["store_mb"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e6
out["rss_mb"] = rss_mb()
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
print(json.dumps(out))
'''


def cases(scale: float) -> list[str]:
    """The cells of issue #16 (and #6), at ``scale`` (1: the sizes the issue names)."""
    def n(count: int) -> int:
        return max(1, int(count * scale))

    return [
        "import numpy as np, pandas as pd\nrng = np.random.default_rng(0)",
        f"rows = {n(3_000_000)}\n"
        "df = pd.DataFrame({'a': rng.random(rows), 'n': rng.integers(0, 1_000_000, rows),\n"
        "                   'city': rng.choice(['paris', 'lima', 'oslo', 'pune'], rows)})\n"
        f"arr = rng.random({n(40_000_000)})\n"
        f"records = [{{'id': i, 'name': f'user {{i}}'}} for i in range({n(200_000)})]\n"
        "small = 0",
        "small = small + 1",
        "df.head()",
        "float(df['a'].sum())",
        "records.append({'id': -1, 'name': 'new'})",
        "df['a'] = df['a'] * 2",
        f"new = np.ones({n(100_000_000)})  # 800 MB",
        f"frame = pd.DataFrame({{'x': rng.random({n(1_000_000)}), "
        f"'g': rng.integers(0, 100, {n(1_000_000)})}})",
        *[("frame.describe()" if i % 2 else "frame.head()") for i in range(20)],
        f"recs = [{{'i': i, 's': str(i)}} for i in range({n(100_000)})]",
        "recs.append({'i': -1, 's': 'new'})",
        f"wide = pd.DataFrame(rng.random(({n(12_500_000)}, 10)), "
        "columns=[f'c{i}' for i in range(10)])  # 1 GB",
        "wide.head()",
        "float(wide['c0'].mean())",
        "wide.iloc[0, 0] = -1.0",
        "wide['c1'] *= 2",
        f"fresh = np.random.default_rng(1).random({n(125_000_000)})  # 1 GB of new data",
        "#extra tag\n%stash tag before",
        "df['a'] = df['a'] + 1",
        "#extra checkout to before the column changed\n%stash checkout before",
        "small = -1",
        "#extra undo of a small change\n%stash undo",
    ]


def notebook_cells(path: Path) -> list[str]:
    """The code cells of an ``.ipynb``, in order (magics and all)."""
    import nbformat

    book = nbformat.read(path, as_version=4)
    return ["".join(c.source) for c in book.cells if c.cell_type == "code" and c.source.strip()]


def run_worker(script: Path, cells: Path, with_stashdb: bool, env: dict[str, str]) -> Any:
    work = Path(tempfile.mkdtemp(prefix="stashdb-nb-"))
    try:
        done = subprocess.run(
            [sys.executable, str(script), str(cells), "1" if with_stashdb else "0"],
            cwd=work, capture_output=True, text=True,
            env={**os.environ, "STASHDB_CONFIG_DIR": str(work / "config"), **env},
        )
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=True)
    if done.returncode != 0:
        raise SystemExit(f"worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def report(title: str, cells: list[str], results: dict[bool, list[Any]]) -> None:
    """Print one notebook's per-cell table (markdown) and its summary lines."""
    med = statistics.median
    plain, ours = results[False], results[True]
    code = [c for c in cells if not c.startswith("#extra ")]
    print(f"\n### {title}\n")
    print("| # | cell | plain | with | in cell | background (pickle / hash / write) |")
    print("|---:|---|---:|---:|---:|---|")
    overheads = []
    for i, cell in enumerate(code):
        number = ours[0]["cells"][i]["number"]
        without = med([r["cells"][i]["wall"] for r in plain])
        with_ = med([r["cells"][i]["wall"] for r in ours])
        hook = med([r["cells"][i]["hook"] for r in ours])
        overheads.append(hook)
        background = _background(ours, number)
        first = cell.strip().splitlines()[0]
        first = (first[:46] + "…") if len(first) > 47 else first
        print(f"| {number} | `{first.replace('|', '/')}` | {_t(without)} | {_t(with_)} | "
              f"{hook * 1000:.1f} ms | {background} |")
    print(f"\nin-cell overhead: median {med(overheads) * 1000:.1f} ms, "
          f"p95 {p95(overheads) * 1000:.1f} ms, max {max(overheads) * 1000:.1f} ms over "
          f"{len(overheads)} cells")
    total_plain = med([sum(c["wall"] for c in r["cells"]) for r in plain])
    total_with = med([sum(c["wall"] for c in r["cells"]) for r in ours])
    print(f"whole notebook: {total_plain:.2f} s plain, {total_with:.2f} s with auto-snapshot "
          f"({total_with / total_plain:.3f}x)")
    for name in ours[0]["extra"]:
        print(f"{name}: {med([r['extra'][name] for r in ours]) * 1000:.0f} ms")
    if "rss" in ours[0]["cells"][0]:  # the kernel's own extra memory: copy-on-write
        extra = [med([r["cells"][i]["rss"] for r in ours]) - med([r["cells"][i]["rss"]
                 for r in plain]) for i in range(len(code))]
        worst = max(range(len(code)), key=lambda i: extra[i])
        print(f"kernel RSS with minus without, after each cell: median {med(extra):.0f} MB, "
              f"largest {extra[worst]:.0f} MB after cell {ours[0]['cells'][worst]['number']}")
    child = max((c["child_memory"] for r in ours for c in r["costs"]), default=0)
    print(f"store: {med([r['store_mb'] for r in ours]):.0f} MB; largest child's own memory "
          f"(copy-on-write + its work): {child / 1e6:.0f} MB; peak RSS "
          f"{med([r['peak_rss_mb'] for r in ours]):.0f} MB with, "
          f"{med([r['peak_rss_mb'] for r in plain]):.0f} MB without")


def _background(ours: list[Any], number: int) -> str:
    """The median cost of the snapshot cell ``number`` made (or took part in)."""
    found = [c for r in ours for c in r["costs"] if c["label"].startswith(f"cell [{number}]")]
    if not found:
        return "no snapshot (nothing changed)"
    med = statistics.median
    total = med([c["total"] for c in found])
    parts = " / ".join(f"{med([c[k] for c in found]) * 1000:.0f}"
                       for k in ("pickling", "hashing", "writing"))
    merged = " merged" if any(c["merged"] for c in found) else ""
    unchanged = " (proved unchanged)" if all(c["proved_unchanged"] for c in found) else ""
    kind = found[0]["background"]
    own = med([c["child_memory"] for c in found]) / 1e6
    memory = f", child's own {own:.0f} MB" if own else ""
    return f"{_t(total)} {kind}{merged}: {parts} ms{unchanged}{memory}"


def _t(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="of the built-in cases")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--replay", type=Path, nargs="*", default=[], help=".ipynb files")
    parser.add_argument("--kernel-env", default="", help="VAR=value ... for both processes")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in shlex.split(args.kernel_env))
    scratch = Path(tempfile.mkdtemp(prefix="stashdb-nbw-"))
    script = scratch / "worker.py"
    script.write_text(WORKER)

    books = ([(f"{path.name}", notebook_cells(path)) for path in args.replay] if args.replay
             else [(f"built-in cases, scale {args.scale}", cases(args.scale))])
    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"medians of {args.runs} runs" + (f"; kernel env: {args.kernel_env}" if env else ""))
    for title, cells in books:
        cells_file = scratch / "cells.json"
        cells_file.write_text(json.dumps(cells))
        results: dict[bool, list[Any]] = {False: [], True: []}
        for number in range(args.runs):
            for with_stashdb in ((False, True) if number % 2 == 0 else (True, False)):
                results[with_stashdb].append(run_worker(script, cells_file, with_stashdb, env))
        report(title, cells, results)


if __name__ == "__main__":
    main()
