"""Benchmark: two ways to write chunk rows to PostgreSQL, measured in one run.

- executemany: SQLAlchemy Core ``INSERT … ON CONFLICT DO NOTHING`` with a list of
  rows (psycopg 3 under SQLAlchemy's batched "insertmanyvalues"); what stashdb does.
- COPY: ``COPY … FROM STDIN (FORMAT BINARY)`` into a temporary table, then
  ``INSERT … SELECT … ON CONFLICT DO NOTHING`` (COPY itself cannot skip rows
  that exist, which content addressing needs).

Usage: python bench/bench_postgres_insert.py [URL] [--repeat 5]
(default URL: $STASHDB_TEST_POSTGRES_URL or postgresql+psycopg://root@127.0.0.1/test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

import xxhash
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql

from stashdb.storage import schema

WORKLOADS = {
    "big chunks: 32 x 4 MiB": (32, 4 * 1024 * 1024),
    "small chunks: 5000 x 2 KiB": (5000, 2048),
}


def rows(count: int, size: int) -> list[dict[str, object]]:
    made = []
    for _ in range(count):
        data = os.urandom(size)
        made.append({"id": xxhash.xxh3_128_digest(data), "raw_size": size, "codec": 0,
                     "data": data})
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default=os.environ.get(
        "STASHDB_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1/test"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    schema_name = f"stashdb_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema_name}"'))
    engine = create_engine(args.url, connect_args={"options": f"-csearch_path={schema_name}"})
    schema.chunks.create(engine)

    def reset() -> None:
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE chunks"))

    def executemany(batch: list[dict[str, object]]) -> None:
        with engine.begin() as conn:
            for start in range(0, len(batch), 64):
                conn.execute(postgresql.insert(schema.chunks).on_conflict_do_nothing(),
                             batch[start : start + 64])

    def copy(batch: list[dict[str, object]]) -> None:
        with engine.begin() as conn:
            raw = conn.connection.dbapi_connection
            cursor = raw.cursor()
            cursor.execute("CREATE TEMP TABLE incoming (LIKE chunks) ON COMMIT DROP")
            with cursor.copy(
                "COPY incoming (id, raw_size, codec, data) FROM STDIN (FORMAT BINARY)"
            ) as stream:
                stream.set_types(["bytea", "int4", "int2", "bytea"])
                for row in batch:
                    stream.write_row((row["id"], row["raw_size"], row["codec"], row["data"]))
            cursor.execute("INSERT INTO chunks SELECT * FROM incoming ON CONFLICT DO NOTHING")

    methods: dict[str, Callable[[list[dict[str, object]]], None]] = {
        "executemany": executemany, "COPY + INSERT SELECT": copy}
    print(f"PostgreSQL at {engine.url.render_as_string(hide_password=True)}; "
          f"median of {args.repeat}")
    print(f"{'workload':<30} {'method':<22} {'seconds':>8} {'MB/s':>8}")
    try:
        for label, (count, size) in WORKLOADS.items():
            batch = rows(count, size)
            megabytes = count * size / 1e6
            for name, method in methods.items():
                times = []
                for _ in range(args.repeat):
                    reset()
                    start = time.perf_counter()
                    method(batch)
                    times.append(time.perf_counter() - start)
                median = statistics.median(times)
                print(f"{label:<30} {name:<22} {median:>8.3f} {megabytes / median:>8.0f}")
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
