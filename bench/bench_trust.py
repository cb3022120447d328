"""Benchmark: what signing, verification and encryption at rest cost (issue #14).

Measured in one run, interleaved, on SQLite stores in a temporary directory
(this VM's timings move by tens of percent between runs of a whole benchmark,
so costs are measured side by side, in one process):

1. Hashes over 4 MiB chunks (xxh3-128, BLAKE3 on one thread and on several,
   SHA-256, BLAKE2b), AES-256-GCM sealing and opening, Ed25519 sign/verify.
2. The write path: a first commit of a workspace like bench_large's (a 128 MB
   float array, a 1-million-row DataFrame, a list of 100,000 small dicts,
   scalars), and a commit where nothing changed, against the time the
   signing work itself takes in it (BLAKE3 of every new chunk, the signature).
3. The read path: a full checkout and one small variable, verified (the
   default) against ``trust=True`` (no signature check, no digests).
4. An encrypted store against a plain one: first commit, full checkout.

Usage: python bench/bench_trust.py [--runs 5]
Not a test: docs/performance.md ("Trust") has the numbers and the machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import stashdb

CHUNK = 4 * 1024 * 1024


def median(times: list[float]) -> float:
    return statistics.median(times)


def rate(fn: Callable[[bytes], Any], chunks: list[bytes], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for c in chunks:
            fn(c)
        times.append(time.perf_counter() - start)
    return len(chunks) * CHUNK / median(times) / 1e9


def primitives(runs: int) -> None:
    import blake3
    import xxhash
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    chunks = [os.urandom(CHUNK)] * 64  # 256 MiB, in cache after the first pass
    aead = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    sealed = aead.encrypt(nonce, chunks[0], b"id")
    print("1. primitives over 4 MiB chunks; GB/s (median)")
    for name, fn in (
        ("xxh3-128 (ids)", lambda c: xxhash.xxh3_128_digest(c)),
        ("BLAKE3, one thread", lambda c: blake3.blake3(c).digest()),
        ("BLAKE3, threads (AUTO)", lambda c: blake3.blake3(c, max_threads=blake3.blake3.AUTO)
         .digest()),
        ("SHA-256", lambda c: hashlib.sha256(c).digest()),
        ("BLAKE2b-256", lambda c: hashlib.blake2b(c, digest_size=32).digest()),
        ("AES-256-GCM seal", lambda c: aead.encrypt(nonce, c, b"id")),
        ("AES-256-GCM open", lambda c: aead.decrypt(nonce, sealed, b"id")),
    ):
        print(f"   {name:26} {rate(fn, chunks, runs):6.2f}")
    key = Ed25519PrivateKey.generate()
    message = os.urandom(2000)
    start = time.perf_counter()
    for _ in range(1000):
        signature = key.sign(message)
    signing = (time.perf_counter() - start) * 1000
    public = key.public_key()
    start = time.perf_counter()
    for _ in range(1000):
        public.verify(signature, message)
    checking = (time.perf_counter() - start) * 1000
    print(f"   Ed25519 sign {signing:.0f} µs, verify {checking:.0f} µs (2 KB payload)")


def workspace() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    n = 1_000_000
    return {
        "big": rng.random(16_000_000),
        "df": pd.DataFrame({"a": rng.random(n), "b": rng.integers(0, 100, n),
                            "city": rng.choice(["Paris", "Lyon", "Nice", "Lille"], n)}),
        "records": [{"i": i, "name": f"r{i}"} for i in range(100_000)],
        "threshold": 0.5,
        "label": "run",
    }


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paths(work: Path, runs: int) -> None:
    import zstandard

    from stashdb.storage.chunking import chunk_digest

    zstd = zstandard.ZstdDecompressor()

    values = workspace()
    plain_commit, sealed_commit, nothing, sign_work = [], [], [], []
    verified, trusted, small_v, small_t, sealed_out, plain_out = [], [], [], [], [], []
    for run in range(runs):
        # The same work for both kinds of store, in alternating order.
        for encrypted in ((False, True) if run % 2 == 0 else (True, False)):
            where = work / f"{'e' if encrypted else 'p'}{run}"
            repo = stashdb.init(where, encrypt=encrypted)
            seconds = timed(lambda r=repo: r.commit("first", namespace=values))
            (sealed_commit if encrypted else plain_commit).append(seconds)
            out = timed(lambda r=repo: r.checkout(namespace={}))
            (sealed_out if encrypted else plain_out).append(out)
            if not encrypted:
                nothing.append(timed(lambda r=repo: r.commit("again", namespace=values)))
                # verified and trusted checkouts, alternating which goes first
                pair = [(verified, {}), (trusted, {"trust": True})]
                for bucket, options in (pair if run % 2 == 0 else pair[::-1]):
                    bucket.append(timed(lambda o=options, r=repo: r.checkout(namespace={}, **o)))
                for _ in range(5):  # a long-lived process: keys read once
                    small_v.append(timed(lambda r=repo: r.at("HEAD")["threshold"]))
                    small_t.append(timed(lambda r=repo: r.at("HEAD", trust=True)["threshold"]))
                # what the signing work costs in that commit: BLAKE3 of its new bytes
                with repo.storage.reader.transaction() as sql:
                    rows = sql.rows("SELECT codec, data FROM chunks")
                    stored = [zstd.decompress(r.data) if r.codec == 1 else bytes(r.data)
                              for r in rows]
                sign_work.append(timed(lambda s=stored: [chunk_digest(c) for c in s]))
            stashdb.close_all()
            shutil.rmtree(where)
    print("\n2. write path, plain store; median s")
    first = median(plain_commit)
    print(f"   first commit                    {first:7.3f}")
    print(f"   BLAKE3 of its raw chunks         {median(sign_work):7.3f}  "
          f"({median(sign_work) / first:.1%} of the commit)")
    print(f"   commit where nothing changed     {median(nothing):7.3f}")
    print("\n3. read path, plain store; median s")
    print(f"   full checkout, verified          {median(verified):7.3f}")
    print(f"   full checkout, trust=True        {median(trusted):7.3f}  "
          f"(verification: {median(verified) / median(trusted) - 1:+.1%})")
    print(f"   one small variable, verified     {median(small_v) * 1000:7.1f} ms")
    print(f"   one small variable, trust=True   {median(small_t) * 1000:7.1f} ms")
    print("\n4. encrypted store against plain; median s")
    print(f"   first commit   plain {first:6.3f}   encrypted {median(sealed_commit):6.3f}  "
          f"({median(sealed_commit) / first - 1:+.1%})")
    print(f"   full checkout  plain {median(plain_out):6.3f}   encrypted "
          f"{median(sealed_out):6.3f}  ({median(sealed_out) / median(plain_out) - 1:+.1%})")


def fresh_processes(work: Path, runs: int) -> None:
    """A full checkout in a new process, as bench_large times one: verified against trust=True."""
    import subprocess
    import sys

    where = work / "fresh"
    stashdb.init(where).commit("first", namespace=workspace())
    stashdb.close_all()
    script = ("import sys, time; t = time.perf_counter(); import stashdb; "
              f"stashdb.open({str(where)!r}).checkout(namespace={{}}, trust=sys.argv[1] == '1'); "
              "print(time.perf_counter() - t)")
    times: dict[bool, list[float]] = {False: [], True: []}
    for run in range(runs):
        for trust in ((False, True) if run % 2 == 0 else (True, False)):
            done = subprocess.run([sys.executable, "-c", script, "1" if trust else "0"],
                                  capture_output=True, text=True, check=True)
            times[trust].append(float(done.stdout.strip().splitlines()[-1]))
    verified, trusted = median(times[False]), median(times[True])
    print("\n5. full checkout in a fresh process (imports included, as bench_large); median s")
    print(f"   verified {verified:6.3f}   trust=True {trusted:6.3f}  "
          f"(verification: {verified / trusted - 1:+.1%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="stashdb-bench-trust-"))
    os.environ.setdefault("STASHDB_CONFIG_DIR", str(work / "keys"))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    try:
        primitives(args.runs)
        paths(work, args.runs)
        fresh_processes(work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
