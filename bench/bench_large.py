"""Benchmark: a notebook-like workload, step by step, stashdb against dill and sessionstash.

The workspace (``--scale 1`` ≈ 250 MB, ``--scale 4`` ≈ 1 GB) lives in ``__main__``
of a worker script: a large float array, a multi-million-row DataFrame with
numeric and string columns, a list of small dicts plus an alias to it, small
scalars, and a function, a class and a lambda defined in ``__main__``.

Steps, each followed by a save with every tool (tool order alternating from
run to run): first save; change one scalar; change one DataFrame column;
append to the big list; add a small variable. dill saves with
``dill.dump_module(refimported=True)`` and sessionstash with
``save_workspace``, one file per step as their users do. Then, in fresh
processes: restore one small variable (stashdb ``checkout --only``, dill
``load_module_asdict``) and restore everything (stashdb ``checkout``, dill
``load_module``, sessionstash ``load_workspace``). With ``--big GB``: a float
array of that size, first commit, a commit where nothing changed, checkout.

Usage: python bench/bench_large.py [--scale 1] [--runs 3] [--big 2]
Prints medians and stashdb's ratio to each tool; peak RSS of each process.
Not a test: docs/performance.md records the numbers and the machine.
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
import textwrap
import time
from pathlib import Path
from typing import Any

WORKER = """
import json, os, resource, sys, time
from pathlib import Path
import numpy as np, pandas as pd
import dill, sessionstash, stashdb

_work, _scale, _order = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(",")
_rng = np.random.default_rng(0)
floats = _rng.random(int(16_000_000 * _scale))                                # 128 MB x scale
frame = pd.DataFrame({
    "x": _rng.random(int(2_000_000 * _scale)),
    "n": _rng.integers(0, 1_000_000, int(2_000_000 * _scale)),
    "city": _rng.choice(["paris", "lima", "oslo", "pune", "kyiv"], int(2_000_000 * _scale)),
})
records = [{"id": i, "name": f"user {i}", "score": i * 0.5} for i in range(int(300_000 * _scale))]
same_records = records                                                        # an alias
threshold = 0.5
label = "run"

class Model:
    def __init__(self, w):
        self.w = w
    def predict(self, x):
        return x * self.w

def helper(v):
    return v * threshold

model = Model(2.0)
square = lambda v: v * v

_repo = stashdb.init(_work / "store")
_files = {"dill": 0, "sessionstash": 0}
_times = {"stashdb": [], "dill": [], "sessionstash": []}
_sizes = {"stashdb": [], "dill": [], "sessionstash": []}

def _dir_size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())

def _save(tool, step):
    start = time.perf_counter()
    if tool == "stashdb":
        _repo.commit(f"step {step}")
    elif tool == "dill":
        dill.dump_module(str(_work / f"dill{step}.pkl"), refimported=True)
    else:
        with open(os.devnull, "w") as quiet, __import__("contextlib").redirect_stdout(quiet):
            sessionstash.save_workspace(_work / f"ws{step}.pkl", namespace=globals())
    _times[tool].append(time.perf_counter() - start)
    if tool == "stashdb":
        _sizes[tool].append(_dir_size(_work / "store"))
    else:
        prefix = "dill" if tool == "dill" else "ws"
        files = [_work / f"{prefix}{s}.pkl" for s in range(step + 1)]
        _sizes[tool].append(sum(f.stat().st_size for f in files))

def _step(step):
    global threshold, extra
    if step == 1:
        threshold = 0.75
    elif step == 2:
        frame["x"] = frame["x"] * 2
    elif step == 3:
        records.append({"id": -1, "name": "new", "score": 0.0})
    elif step == 4:
        extra = [1, 2, 3]

for _s in range(5):
    _step(_s)
    for _tool in _order:
        _save(_tool, _s)
_repo.close()
print(json.dumps({"times": _times, "sizes": _sizes,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000,
                  "live_mb": (floats.nbytes + int(frame.memory_usage(deep=True).sum())) / 1e6}))
"""

RESTORES = {
    "one small variable": {
        "stashdb": "import stashdb\nstashdb.checkout(only=['threshold'], repo={store!r})\n",
        "dill": "import dill\nns = dill.load_module_asdict({dill!r})\nns['threshold']\n",
        "sessionstash": None,  # it has no partial restore
    },
    "everything": {
        "stashdb": "import stashdb\nstashdb.checkout(repo={store!r})\n",
        "dill": "import dill\ndill.load_module({dill!r})\n",
        "sessionstash": (
            "import sessionstash, contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    sessionstash.load_workspace({ws!r})\n"
        ),
    },
}
RSS = (
    "\nimport resource, json\n"
    "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
)

BIG = """
import json, resource, sys, time
import numpy as np, stashdb
gb = float(sys.argv[2])
a = np.random.default_rng(1).random(int(gb * 1e9 / 8))
repo = stashdb.init(sys.argv[1])
t = time.perf_counter(); repo.commit(namespace={"a": a}); first = time.perf_counter() - t
t = time.perf_counter(); repo.commit(namespace={"a": a}); again = time.perf_counter() - t
del a
t = time.perf_counter(); ns = {}; repo.checkout(namespace=ns); out = time.perf_counter() - t
print(json.dumps({"first_gbps": ns["a"].nbytes / first / 1e9, "unchanged_s": again,
                  "checkout_gbps": ns["a"].nbytes / out / 1e9,
                  "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}))
"""

TOOLS = ["stashdb", "dill", "sessionstash"]
STEPS = ["first save", "change one scalar", "change one column", "append to the list",
         "add a small variable"]


def run(script: Path, *args: str, cwd: Path) -> Any:
    done = subprocess.run([sys.executable, str(script), *args], cwd=cwd, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def timed(code: str, cwd: Path) -> tuple[float, float]:
    script = cwd / "restore.py"
    script.write_text(textwrap.dedent(code) + RSS)
    start = time.perf_counter()
    rss = run(script, cwd=cwd)
    return time.perf_counter() - start, rss / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", type=float, default=0.0, help="also time an array of GB")
    args = parser.parse_args()

    saves: dict[str, list[list[float]]] = {t: [[] for _ in STEPS] for t in TOOLS}
    sizes: dict[str, list[float]] = {}
    restores: dict[str, dict[str, list[float]]] = {k: {t: [] for t in TOOLS} for k in RESTORES}
    rss: dict[str, float] = {}
    live_mb = 0.0
    for number in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="stashdb-large-"))
        order = TOOLS[number % 3:] + TOOLS[: number % 3]  # alternate who goes first
        (work / "worker.py").write_text(WORKER)
        result = run(work / "worker.py", str(work), str(args.scale), ",".join(order), cwd=work)
        live_mb = result["live_mb"]
        rss["save worker"] = max(rss.get("save worker", 0), result["rss_mb"])
        for tool in TOOLS:
            for step, seconds in enumerate(result["times"][tool]):
                saves[tool][step].append(seconds)
        sizes = {t: [s / 1e6 for s in result["sizes"][t]] for t in TOOLS}
        paths = {"store": str(work / "store"), "dill": str(work / "dill4.pkl"),
                 "ws": str(work / "ws4.pkl")}
        for kind, codes in RESTORES.items():
            for tool in order:
                code = codes[tool]
                if code is None:
                    continue
                seconds, peak = timed(code.format(**paths), work)
                restores[kind][tool].append(seconds)
                rss[f"restore {kind}: {tool}"] = max(rss.get(f"restore {kind}: {tool}", 0), peak)
        subprocess.run(["rm", "-rf", str(work)], check=True)

    def med(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    def ratio(other: float, ours: float) -> str:
        return f"{other / ours:.1f}×" if ours and other == other else "—"

    cpu = platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"scale {args.scale} (live data {live_mb:.0f} MB); median of {args.runs} runs")
    print(f"\n{'step':<30}{'stashdb':>9}{'dill':>9}{'sessionstash':>13}"
          f"{'dill/ours':>11}{'ss/ours':>9}   sizes MB: stashdb / dill / ss")
    for step, name in enumerate(STEPS):
        t = {tool: med(saves[tool][step]) for tool in TOOLS}
        print(f"{name:<30}{t['stashdb']:>9.3f}{t['dill']:>9.3f}{t['sessionstash']:>13.3f}"
              f"{ratio(t['dill'], t['stashdb']):>11}{ratio(t['sessionstash'], t['stashdb']):>9}"
              f"   {sizes['stashdb'][step]:.0f} / {sizes['dill'][step]:.0f} / "
              f"{sizes['sessionstash'][step]:.0f}")
    print(f"store after 5 steps / one dill file: "
          f"{sizes['stashdb'][-1] / (sizes['dill'][-1] / 5):.2f}× "
          f"(dill's own 5 files: 5.00×; one dill file ≈ {sizes['dill'][-1] / 5:.0f} MB)")
    for kind in RESTORES:
        t = {tool: med(restores[kind][tool]) for tool in TOOLS}
        print(f"restore {kind}, fresh process (s): stashdb {t['stashdb']:.3f}, dill "
              f"{t['dill']:.3f} ({ratio(t['dill'], t['stashdb'])}), sessionstash "
              f"{t['sessionstash']:.3f} ({ratio(t['sessionstash'], t['stashdb'])})")
    print("peak RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items()))
    if args.big:
        work = Path(tempfile.mkdtemp(prefix="stashdb-big-"))
        (work / "big.py").write_text(BIG)
        big = run(work / "big.py", str(work / "store"), str(args.big), cwd=work)
        subprocess.run(["rm", "-rf", str(work)], check=True)
        print(f"\n{args.big:g} GB float array: first commit {big['first_gbps']:.2f} GB/s, "
              f"commit with nothing changed {big['unchanged_s']:.3f} s, checkout "
              f"{big['checkout_gbps']:.2f} GB/s, peak RSS {big['rss_gb']:.1f} GB")


if __name__ == "__main__":
    main()
