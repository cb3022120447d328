"""Benchmark: the viewer's pages on a big history (issue #17: graph page <= 300 ms).

Builds (once, or reuses with --store) a history of COMMITS commits over a
workspace of VARIABLES variables, every variable in every snapshot (so the
store holds COMMITS x VARIABLES manifest rows), three changed per commit.
Then serves it with `stashdb ui` in its own process and times each page over
HTTP, as a browser would ask: the first request (cold: nothing memoised) and
the median of the next RUNS.

Usage: python bench/bench_ui.py [--store DIR] [--commits 10000] [--variables 1000] [--runs 9]
Not a test: docs/performance.md ("The viewer") has the numbers and the machine.
"""

from __future__ import annotations

import argparse
import http.client
import platform
import random
import statistics
import time
from pathlib import Path
from urllib.parse import urlsplit

import stashdb


def build(path: Path, commits: int, variables: int) -> stashdb.Repo:
    repo = stashdb.init(path)
    rng = random.Random(0)
    ns: dict[str, object] = {f"v{i:04d}": i for i in range(variables)}
    base = repo.commit("start", namespace=ns)
    for n in range(1, commits):
        changed = {f"v{rng.randrange(variables):04d}" for _ in range(3)}
        for name in changed:
            ns[name] = [n, name] * rng.randrange(1, 50)
        made = repo.commit_changes(base, changed, f"step {n}", namespace=ns)
        assert made is not None
        base = made
        if n % 1000 == 0:
            print(f"  built {n} commits", flush=True)
    return repo


def timed(url: str, path: str) -> float:
    parts = urlsplit(url)
    token = parts.query.removeprefix("token=")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    start = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"token {token}"})
    response = conn.getresponse()
    response.read()
    took = time.perf_counter() - start
    conn.close()
    assert response.status == 200, (path, response.status)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, default=Path("bench-ui-store"))
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--variables", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    if (args.store / ".stashdb").exists():
        repo = stashdb.open(args.store)
    else:
        started = time.perf_counter()
        repo = build(args.store, args.commits, args.variables)
        print(f"built in {time.perf_counter() - started:.0f} s")
    commits = len(repo.lineage(all=True)[0])
    names = len(repo.show("HEAD").entries)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"{commits} commits, {names} variables in each")
    viewer = stashdb.ui(repo, open_browser=False)
    try:
        pages = ["/", "/?page=2", "/?page=100", "/?name=v0001", "/commit/HEAD",
                 "/diff/HEAD~50..HEAD", "/variable/v0001", "/store", "/api/state"]
        print(f"{'page':24} {'first':>9} {'median':>9}")
        for path in pages:
            first = timed(viewer.url, path)
            rest = [timed(viewer.url, path) for _ in range(args.runs)]
            print(f"{path:24} {first * 1000:7.0f} ms {statistics.median(rest) * 1000:7.0f} ms")
        first = timed(viewer.url, "/api/stats")
        print(f"{'/api/stats':24} {first * 1000:7.0f} ms (then kept until the store changes)")
    finally:
        viewer.stop()


if __name__ == "__main__":
    main()
