"""Benchmark: moving history between stores (issue #15), SQLite laptop ↔ PostgreSQL team store.

One history, built once: 1,000 commits on a SQLite store; every commit
changes a small counter, and every 50th adds a 50 MB array of random floats
(incompressible), so the history holds about 1 GB. Then, for each run, on a
fresh PostgreSQL schema:

1. ``push`` of the whole history (stored bytes per second), against copying
   the SQLite file by hand (``shutil.copyfile``: what users do today).
2. ``push`` again when the remote has everything (1,000 commits to compare).
3. ``clone --lazy`` of the PostgreSQL store into a new SQLite store.
4. Restoring one small variable from the lazy clone: in-process
   (``at("HEAD")["i"]``: fetches its one chunk), and in a fresh process.
5. ``pull`` of one new commit into the full clone's origin.

Usage: python bench/bench_remote.py [--runs 3] [--url postgresql+psycopg://root@127.0.0.1/test]
Not a test: docs/performance.md ("Moving state") has the numbers and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

import stashdb

ARRAY = 50_000_000 // 8  # 50 MB of float64


def build(path: Path, commits: int, every: int) -> stashdb.Repo:
    repo = stashdb.init(path)
    rng = np.random.default_rng(0)
    ns: dict[str, Any] = {"i": 0}
    base = repo.commit("start", namespace=ns)
    for n in range(1, commits):
        changed = {"i"}
        ns["i"] = n
        if n % every == 0:
            ns[f"block{n}"] = rng.random(ARRAY)
            changed.add(f"block{n}")
        made = repo.commit_changes(base, changed, f"step {n}", namespace=ns)
        assert made is not None
        base = made
    return repo


def schema(base_url: str) -> tuple[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"stashdb_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    url = make_url(base_url).update_query_dict({"options": f"-csearch_path={name}"})

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def raw_insert(url: str, total: int) -> float:
    """Seconds for psycopg alone to insert ``total`` bytes as 4 MiB rows, 64 MB a transaction.

    The server's ceiling for what a push writes: the same rows, nothing else done.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    conn = psycopg.connect(host=u.host, port=u.port or 5432, user=u.username,
                           dbname=u.database, options=u.query.get("options", ""),
                           autocommit=True)
    block = [os.urandom(4 * 1024 * 1024) for _ in range(16)]
    conn.execute("CREATE TABLE ceiling (id bytea PRIMARY KEY, data bytea NOT NULL)")
    start = time.perf_counter()
    for _ in range(max(1, total // (64 * 1024 * 1024))):
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO ceiling VALUES (%s, %s) ON CONFLICT DO NOTHING",
                            [(os.urandom(16), b) for b in block])
    took = time.perf_counter() - start
    conn.execute("DROP TABLE ceiling")
    conn.close()
    return took


def small_value(repo: stashdb.Repo) -> Any:
    """One small variable of HEAD, as a user reads it (opening the snapshot included)."""
    return repo.at("HEAD")["i"]


def timed(action: Any, *args: Any, **kwargs: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--url", default=os.environ.get(
        "STASHDB_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stashdb-bench-remote-"))
    os.environ["STASHDB_CONFIG_DIR"] = str(work / "keys")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    took, laptop = timed(build, work / "laptop", args.commits, args.every)
    db = work / "laptop" / ".stashdb" / "stash.db"
    size = db.stat().st_size
    print(f"history: {args.commits} commits, {size / 1e9:.2f} GB store (built in {took:.1f} s)")
    rows: dict[str, list[float]] = {k: [] for k in (
        "ceiling", "copy", "push", "noop", "lazy", "small", "small_fresh", "pull")}
    sent_bytes = 0
    try:
        for run in range(args.runs):
            url, drop = schema(args.url)
            try:
                stashdb.init(url).close()
                rows["ceiling"].append(raw_insert(url, size))
                copy_to = work / f"copy{run}.db"
                rows["copy"].append(timed(shutil.copyfile, db, copy_to)[0])
                copy_to.unlink()
                name = f"team{run}"
                laptop.add_remote(name, url)
                took, sent = timed(laptop.push, name)
                rows["push"].append(took)
                sent_bytes = sent.bytes
                noops = [timed(laptop.push, name)[0] for _ in range(5)]
                rows["noop"].append(statistics.median(noops))
                lazy_dir = work / f"lazy{run}"
                took, (lazy, _) = timed(stashdb.clone, url, lazy_dir, lazy=True)
                rows["lazy"].append(took)
                took, value = timed(small_value, lazy)
                assert value == laptop.at("HEAD")["i"]
                rows["small"].append(took)
                lazy.close()
                fresh_dir = work / f"fresh{run}"
                stashdb.clone(url, fresh_dir, lazy=True)[0].close()
                code = f"import stashdb; print(stashdb.open({str(fresh_dir)!r}).at('HEAD')['i'])"
                took, done = timed(
                    subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
                    check=True)
                assert done.stdout.strip() == str(value)
                rows["small_fresh"].append(took)
                laptop.commit_changes(laptop.show("HEAD"), {"i"}, "one more",
                                      namespace={"i": -1 - run})
                team = stashdb.open(url)
                follower_dir = work / f"follower{run}"
                follower, _ = stashdb.clone(url, follower_dir, lazy=True)
                laptop.push(name)
                rows["pull"].append(timed(follower.pull)[0])
                follower.close()
                team.close()
                shutil.rmtree(follower_dir)
                laptop.remove_remote(name)
            finally:
                stashdb.close_all()
                laptop = stashdb.open(work / "laptop")
                drop()
    finally:
        laptop.close()
        shutil.rmtree(work, ignore_errors=True)

    def med(key: str) -> float:
        return statistics.median(rows[key])

    print(f"\nmedians of {args.runs} runs (each on a fresh PostgreSQL schema):")
    print(f"  push of the whole history  {med('push'):7.2f} s  "
          f"{sent_bytes / med('push') / 1e9:.2f} GB/s of {sent_bytes / 1e9:.2f} GB stored "
          f"(target >= 0.3 GB/s)")
    print(f"  psycopg inserts alone      {med('ceiling'):7.2f} s  "
          f"{size / med('ceiling') / 1e9:.2f} GB/s (the server's ceiling for the same bytes)")
    print(f"  copying the SQLite file    {med('copy'):7.2f} s  "
          f"{size / med('copy') / 1e9:.2f} GB/s (by hand, no history merge)")
    print(f"  push, remote has it all    {med('noop') * 1000:7.1f} ms  for {args.commits} commits "
          f"(target <= 200 ms)")
    print(f"  clone --lazy               {med('lazy'):7.2f} s  (target <= 1 s)")
    print(f"  one small value, lazily    {med('small') * 1000:7.1f} ms in-process, "
          f"{med('small_fresh') * 1000:.0f} ms in a fresh process (target <= 300 ms)")
    print(f"  pull of one new commit     {med('pull') * 1000:7.1f} ms (lazy follower)")
    print("  all runs:", {k: [round(v, 3) for v in vs] for k, vs in rows.items()})


if __name__ == "__main__":
    main()
