"""Benchmark: stashdb against dill.dump_module and sessionstash on one workspace.

Measures, in one run on one machine, with medians over repeats:

- save: the first save of the whole workspace;
- save after a small change (one float changed): stashdb writes only that
  variable, the others rewrite everything;
- restore one small variable in a fresh interpreter (wall clock, including
  interpreter start and imports, which is what a user waits for);
- restore everything in a fresh interpreter;
- storage after 5 saves, each after a small change.

Usage: python bench/bench_commit.py [--scale 1.0] [--repeat 5] [--json out.json]
Not a test: numbers depend on the machine; docs/performance.md records them.
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
import textwrap
import time
from pathlib import Path

import dill
import numpy as np
import pandas as pd

WORKSPACE_CODE = """
import numpy as np, pandas as pd

rng = np.random.default_rng(0)
weights = rng.random({n_floats})                            # incompressible floats
frame = pd.DataFrame({{
    "id": np.arange({n_rows}),
    "price": rng.random({n_rows}),
    "city": rng.choice(["paris", "lima", "oslo", "pune"], {n_rows}),
    "when": pd.date_range("2026-01-01", periods={n_rows}, freq="min"),
}})
records = [{{"id": i, "name": f"user {{i}}", "score": i * 0.5}} for i in range({n_records})]
lookup = {{r["id"]: r for r in records[:1000]}}           # shares dicts with records
threshold = 0.5

class Model:
    def __init__(self, coef):
        self.coef = coef
    def predict(self, x):
        return x @ self.coef

model = Model(rng.random(64))
score = lambda m, x: float(m.predict(x).sum())
"""


#: Appended to the workspace code: the saves are timed inside a script whose
#: workspace lives in __main__, as a user's would. Helper names start with "_"
#: so that none of the three tools counts them as workspace.
SAVES_CODE = """
import json as _json, os as _os, statistics as _statistics, sys as _sys, time as _time
import dill as _dill, sessionstash as _sessionstash, stashdb as _stashdb
from pathlib import Path as _Path

_work, _repeat, _postgres = _Path(_sys.argv[1]), int(_sys.argv[2]), _sys.argv[3]


def _new_store(name):
    # A new store: a directory under the work dir, or a schema on the PostgreSQL server.
    if not _postgres:
        return _stashdb.init(_work / name)
    from sqlalchemy import create_engine as _create_engine, text as _text
    from sqlalchemy.engine import make_url as _make_url
    schema = f"stashdb_bench_{{name}}_{{_os.getpid()}}"
    with _create_engine(_postgres).begin() as conn:
        conn.execute(_text(f'DROP SCHEMA IF EXISTS "{{schema}}" CASCADE'))
        conn.execute(_text(f'CREATE SCHEMA "{{schema}}"'))
    url = _make_url(_postgres).update_query_dict({{"options": f"-csearch_path={{schema}}"}})
    return _stashdb.init(url.render_as_string(hide_password=False))


def _store_size(repo):
    # Bytes the store takes: its files, or its tables and indexes on the server.
    if not _postgres:
        return sum(f.stat().st_size for f in _Path(repo.location).rglob("*") if f.is_file())
    from sqlalchemy import text as _text
    with repo.storage.database.engine.connect() as conn:
        return conn.execute(_text(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind = 'r'")).scalar()

_results = {{}}

def _median(fn):
    times = []
    for _ in range(_repeat):
        start = _time.perf_counter()
        fn()
        times.append(_time.perf_counter() - start)
    return _statistics.median(times)

# Each first save goes to its own empty store, made beforehand: creating a
# store (running its migration) is a one-off, not part of saving.
_empty = [_new_store(f"first{{_i}}") for _i in range(_repeat)]
def _stash_first():
    _empty.pop().commit("first")

_quiet = open(_os.devnull, "w")
_stdout, _sys.stdout = _sys.stdout, _quiet   # sessionstash prints on every call
_dill_save = lambda: _dill.dump_module(str(_work / "session.pkl"))
_sessionstash_save = lambda: _sessionstash.save_workspace(_work / "ws.pkl", namespace=globals())
_results["first save (s)"] = {{
    "stashdb": _median(_stash_first),
    "dill": _median(_dill_save),
    "sessionstash": _median(_sessionstash_save),
}}

_repo = _new_store("store")
_repo.commit("base")
def _tweak_then(save):
    def run():
        global threshold
        threshold += 0.001
        save()
    return run
_results["save after a small change (s)"] = {{
    "stashdb": _median(_tweak_then(lambda: _repo.commit("tweak"))),
    "dill": _median(_tweak_then(_dill_save)),
    "sessionstash": _median(_tweak_then(_sessionstash_save)),
}}

_growth = _new_store("growth")
_dill_total = _ws_total = 0
for _i in range(5):
    threshold = 0.1 * _i
    _growth.commit(f"save {{_i}}")
    _dill.dump_module(str(_work / f"session{{_i}}.pkl"))
    _sessionstash.save_workspace(_work / f"ws{{_i}}.pkl", namespace=globals())
    _dill_total += (_work / f"session{{_i}}.pkl").stat().st_size
    _ws_total += (_work / f"ws{{_i}}.pkl").stat().st_size
_store_bytes = int(_store_size(_growth))
_results["storage after 5 saves (MB)"] = {{
    "stashdb": _store_bytes / 1e6, "dill": _dill_total / 1e6, "sessionstash": _ws_total / 1e6,
}}
_sys.stdout = _stdout
_repo.close()
_growth.close()
print(_json.dumps({{"results": _results, "store": _repo.url, "pid": _os.getpid(),
                   "weights": weights.nbytes,
                   "rows": len(frame),
                   "frame": int(frame.memory_usage().sum()), "records": len(records)}}))
"""


def fresh_process_time(code: str, cwd: Path, repeat: int) -> float:
    script = cwd / "restore.py"
    script.write_text(textwrap.dedent(code))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(script)], cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ratio(other: float, ours: float) -> str:
    return f"{other / ours:.1f}×" if ours > 0 else "∞"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="workspace size factor")
    parser.add_argument("--repeat", type=int, default=5, help="repeats per measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="keep stashdb's stores on this PostgreSQL server (one schema per store)",
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stashdb-bench-"))
    code = WORKSPACE_CODE.format(
        n_floats=int(10_000_000 * args.scale),
        n_rows=int(500_000 * args.scale),
        n_records=int(100_000 * args.scale),
    )
    worker = work / "saves.py"
    worker.write_text(code + SAVES_CODE.format())
    done = subprocess.run(
        [sys.executable, str(worker), str(work), str(args.repeat), args.postgres or ""],
        cwd=work, check=True, capture_output=True, text=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    results: dict[str, dict[str, float]] = measured["results"]

    # -- restore in a fresh interpreter -------------------------------------------------
    store_dir = measured["store"]
    results["restore one small variable, fresh process (s)"] = {
        "stashdb": fresh_process_time(
            f"import stashdb\nstashdb.checkout(only=['threshold'], repo={store_dir!r})\n",
            work,
            args.repeat,
        ),
        "dill": fresh_process_time(
            f"import dill\ndill.load_module({str(work / 'session.pkl')!r})\n",
            work,
            args.repeat,
        ),
        "sessionstash": fresh_process_time(
            "import sessionstash, contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    sessionstash.load_workspace({str(work / 'ws.pkl')!r})\n",
            work,
            args.repeat,
        ),
    }
    results["restore everything, fresh process (s)"] = {
        "stashdb": fresh_process_time(
            f"import stashdb\nstashdb.checkout(repo={store_dir!r})\n", work, args.repeat
        ),
        "dill": results["restore one small variable, fresh process (s)"]["dill"],
        "sessionstash": results["restore one small variable, fresh process (s)"]["sessionstash"],
    }
    # -- report ----------------------------------------------------------------------------
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"machine: {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; "
          f"numpy {np.__version__}, pandas {pd.__version__}, dill {dill.__version__}")
    print(f"workspace: weights {measured['weights'] / 1e6:.0f} MB float64, frame "
          f"{measured['rows']:,} rows ({measured['frame'] / 1e6:.0f} MB), "
          f"{measured['records']:,} dict records, a class instance, a lambda; "
          f"median of {args.repeat}")
    print()
    header = (
        f"{'measurement':<48} {'stashdb':>9} {'dill':>9} {'sessionstash':>13} "
        f"{'dill/stashdb':>13} {'sessionstash/stashdb':>21}"
    )
    print(header)
    print("-" * len(header))
    for name, row in results.items():
        ours = row["stashdb"]
        print(
            f"{name:<48} {ours:>9.3f} {row['dill']:>9.3f} {row['sessionstash']:>13.3f} "
            f"{ratio(row['dill'], ours):>13} {ratio(row['sessionstash'], ours):>21}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    if args.postgres:
        _drop_schemas(args.postgres, f"stashdb_bench_%_{measured['pid']}")


def _drop_schemas(url: str, pattern: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        names = conn.execute(
            text("SELECT nspname FROM pg_namespace WHERE nspname LIKE :p"), {"p": pattern}
        ).scalars().all()
        for name in names:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()


if __name__ == "__main__":
    main()
