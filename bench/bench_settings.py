"""Benchmark: the SQLite store settings, measured rather than guessed.

For each setting, the same workload in a fresh store: 100 commits of one
small changed value (a session's or a notebook's step: the median is shown),
then commit 512 MB of random floats (incompressible) plus 128 MB of small
integers (compressible), change 1 % of the floats in place and commit again,
and check everything out. Settings varied one at a time from the defaults
(16 KiB pages, the rollback journal kept between transactions
(``PERSIST``), 4 MiB chunks, 64 rows an INSERT): page size, journal mode,
chunk size, rows per INSERT.

Usage: python bench/bench_settings.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import stashdb
import stashdb.storage.chunking as chunking
import stashdb.storage.engine as engine
import stashdb.storage.objects as objects

DEFAULTS = {"page": 16384, "journal": "PERSIST", "chunk": 4 * 1024 * 1024, "rows": 64}
VARIANTS = [
    ("defaults", {}),
    ("before: 64 KiB, DELETE", {"page": 65536, "journal": "DELETE"}),
    ("4 KiB pages", {"page": 4096}),
    ("64 KiB pages", {"page": 65536}),
    ("DELETE journal", {"journal": "DELETE"}),
    ("WAL journal", {"journal": "WAL"}),
    ("1 MiB chunks", {"chunk": 1024 * 1024}),
    ("16 MiB chunks", {"chunk": 16 * 1024 * 1024}),
    ("16 rows an INSERT", {"rows": 16}),
    ("256 rows an INSERT", {"rows": 256}),
]


def run_once(
    settings: dict[str, object], floats: np.ndarray, ints: np.ndarray
) -> tuple[float, float, float, int, float]:
    engine.SQLITE_PAGE_SIZE = settings["page"]  # type: ignore[assignment]
    engine.SQLITE_JOURNAL_MODE = settings["journal"]  # type: ignore[assignment]
    chunking.CHUNK_SIZE = settings["chunk"]  # type: ignore[assignment]
    objects._INSERT_ROWS = settings["rows"]  # type: ignore[assignment]
    work = Path(tempfile.mkdtemp(prefix="stashdb-settings-"))
    try:
        repo = stashdb.init(work)
        small = []
        for i in range(100):
            start = time.perf_counter()
            repo.commit(namespace={"step": i})
            small.append(time.perf_counter() - start)
        start = time.perf_counter()
        repo.commit(namespace={"floats": floats, "ints": ints})
        first = time.perf_counter() - start
        changed = floats.copy()
        changed[: len(changed) // 100] += 1.0
        start = time.perf_counter()
        second = repo.commit(namespace={"floats": changed, "ints": ints})
        again = time.perf_counter() - start
        start = time.perf_counter()
        repo.checkout(namespace={})
        out = time.perf_counter() - start
        repo.close()
        stashdb.close_all()
        return first, again, out, second.bytes_written, statistics.median(small)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    floats = rng.random(64_000_000)  # 512 MB
    ints = rng.integers(0, 100, 16_000_000)  # 128 MB, compressible
    print(f"median of {args.repeat}; 640 MB first commit, then 1 % of the floats changed")
    print(f"{'setting':<22}{'small ms':>9}{'first commit s':>15}{'GB/s':>7}{'1% change s':>13}"
          f"{'written MB':>12}{'checkout s':>12}")
    for name, change in VARIANTS:
        settings = {**DEFAULTS, **change}
        runs = [run_once(settings, floats, ints) for _ in range(args.repeat)]
        first = statistics.median(r[0] for r in runs)
        again = statistics.median(r[1] for r in runs)
        out = statistics.median(r[2] for r in runs)
        written = runs[0][3] / 1e6
        small = statistics.median(r[4] for r in runs) * 1000
        print(f"{name:<22}{small:>9.2f}{first:>15.2f}{0.64 / first:>7.2f}{again:>13.2f}"
              f"{written:>12.1f}"
              f"{out:>12.2f}")


if __name__ == "__main__":
    main()
