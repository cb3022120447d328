"""Benchmark: what bounds the first commit of a large array — the disk, SQLite, or stashdb?

Writes the same bytes (random float64, incompressible) three ways, each
synced as stashdb syncs (a transaction, or an fsync, every 64 MiB):

1. a plain file: ``os.write`` + ``os.fsync`` — the disk's own bound;
2. SQLite alone: 4 MiB blobs inserted with ``executemany`` into a table like
   stashdb's ``chunks`` (64 KiB pages, rollback journal), a commit every
   64 MiB — SQLite's bound on this disk;
3. ``stashdb`` committing the array (hashing, chunking, the same inserts).

Usage: python bench/bench_disk.py [--gb 2] [--runs 3]
Prints the median GB/s of each. Not a test: docs/performance.md has the
numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import stashdb

CHUNK = 4 * 1024 * 1024
TRANSACTION = 64 * 1024 * 1024


def plain_file(data: memoryview, work: Path) -> float:
    start = time.perf_counter()
    fd = os.open(work / "plain.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for offset in range(0, len(data), TRANSACTION):
            os.write(fd, data[offset : offset + TRANSACTION])
            os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def sqlite_alone(data: memoryview, work: Path) -> float:
    start = time.perf_counter()
    db = sqlite3.connect(work / "alone.db", isolation_level=None)
    db.execute("PRAGMA page_size = 65536")
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute(
        "CREATE TABLE chunks (id BLOB PRIMARY KEY, raw_size INTEGER, codec INTEGER, data BLOB)"
    )
    for offset in range(0, len(data), TRANSACTION):
        rows = [
            (offset.to_bytes(8, "little") + at.to_bytes(8, "little"), CHUNK, 0,
             data[offset + at : offset + at + CHUNK])
            for at in range(0, min(TRANSACTION, len(data) - offset), CHUNK)
        ]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    db.close()
    return time.perf_counter() - start


def with_stashdb(array: np.ndarray, work: Path) -> float:
    repo = stashdb.init(work / "store")
    start = time.perf_counter()
    repo.commit(namespace={"a": array})
    elapsed = time.perf_counter() - start
    repo.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    array = np.random.default_rng(0).random(int(args.gb * 1e9 / 8))
    data = array.data.cast("B")
    times: dict[str, list[float]] = {"plain file + fsync": [], "SQLite alone": [], "stashdb": []}
    for _ in range(args.runs):
        for name, run in (
            ("plain file + fsync", lambda w: plain_file(data, w)),
            ("SQLite alone", lambda w: sqlite_alone(data, w)),
            ("stashdb", lambda w: with_stashdb(array, w)),
        ):
            work = Path(tempfile.mkdtemp(prefix="stashdb-disk-"))
            try:
                times[name].append(run(work))
            finally:
                shutil.rmtree(work)
    print(f"{args.gb:g} GB of random floats, a sync every 64 MiB; median of {args.runs}:")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"  {name:<20} {seconds:6.2f} s  {array.nbytes / seconds / 1e9:5.2f} GB/s")


if __name__ == "__main__":
    main()
