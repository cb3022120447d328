"""Large values: any size, only what changed is written, compression never changes values.

Correctness only; how fast is bench/'s business.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import func, select

import stashdb
from conftest import raw_connection
from stashdb.storage import schema
from stashdb.storage.chunking import CHUNK_SIZE, CODEC_RAW, CODEC_ZSTD


def codecs(repo: stashdb.Repo, object_id: str) -> set[int]:
    c, oc = schema.chunks.c, schema.object_chunks.c
    with raw_connection(repo) as conn:
        return set(conn.execute(
            select(c.codec).join(schema.object_chunks, oc.chunk_id == c.id)
            .where(oc.object_id == bytes.fromhex(object_id))
        ).scalars())


def test_a_value_over_a_gigabyte_round_trips(repo: stashdb.Repo) -> None:
    # Over SQLite's and PostgreSQL's ~1 GB limit for one stored value.
    big = np.arange(1_100_000_000 // 8, dtype=np.int64)
    commit = repo.commit(namespace={"big": big})
    assert commit.entry("big").size > 1_000_000_000
    with raw_connection(repo) as conn:
        largest = conn.execute(select(func.max(schema.chunks.c.raw_size))).scalar_one()
    assert largest <= CHUNK_SIZE
    restored = repo.at(commit.id)["big"]
    assert restored.flags.writeable and np.array_equal(restored, big)


def test_changing_one_column_writes_only_that_columns_chunks(repo: stashdb.Repo) -> None:
    rows = 2_000_000  # 8-16 MB a column: two to four chunks each
    rng = np.random.default_rng(4)
    # One dtype a column, so each column is its own pandas block (columns of one
    # dtype share a block, which pandas may re-split when one of them is replaced).
    frame = pd.DataFrame({
        "a": rng.random(rows),
        "b": rng.integers(0, 1000, rows),
        "c": rng.random(rows).astype(np.float32),
        "d": rng.integers(0, 1000, rows).astype(np.int32),
    })
    first = repo.commit(namespace={"frame": frame})
    frame["c"] = frame["c"] * 2
    second = repo.commit(namespace={"frame": frame})
    assert first.chunks_written >= 12  # 48 MB of buffers
    # Column c's 8 MB (two chunks), and the pickle stream.
    assert second.chunks_written <= 8_000_000 // CHUNK_SIZE + 2
    assert second.bytes_written < 0.25 * first.bytes_written
    assert repo.at(second.id)["frame"].equals(frame)


def test_changing_one_of_several_same_dtype_columns_writes_only_that_column(
    repo: stashdb.Repo,
) -> None:
    # Columns of one dtype share a pandas block; replacing the middle one
    # re-splits the block, moving the others' bytes. Chunks follow the block's
    # rows (one per column), so the moved columns keep their chunk ids.
    rows = 2_000_000  # 16 MB a column: four chunks each
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({name: rng.random(rows) for name in "abc"})
    assert len(frame._mgr.blocks) == 1
    first = repo.commit(namespace={"frame": frame})
    frame["b"] = frame["b"] * 2
    assert len(frame._mgr.blocks) > 1  # pandas re-split the block: c moved
    second = repo.commit(namespace={"frame": frame})
    assert first.chunks_written >= 12
    assert second.chunks_written <= 16_000_000 // CHUNK_SIZE + 2
    assert repo.at(second.id)["frame"].equals(frame)


def test_compression_on_or_off_gives_the_same_ids_and_values(
    repo: stashdb.Repo, tmp_path_factory: object
) -> None:
    values = {"zeros": np.zeros(3_000_000), "text": ["same words"] * 100_000, "n": 1}
    on = repo.commit(namespace=values)
    assert CODEC_ZSTD in codecs(repo, on.entry("zeros").object_id or "")
    other = stashdb.init(tmp_path_factory.mktemp("raw"))  # type: ignore[attr-defined]
    other.compress = False
    off = other.commit(namespace=values)
    assert codecs(other, off.entry("zeros").object_id or "") == {CODEC_RAW}
    assert [e.object_id for e in on.entries] == [e.object_id for e in off.entries]
    assert off.entry("zeros").stored_size > 50 * on.entry("zeros").stored_size
    for name, value in values.items():
        got = other.at(off.id)[name]
        assert np.array_equal(got, value) if name == "zeros" else got == value


def test_incompressible_chunks_are_stored_raw(repo: stashdb.Repo) -> None:
    commit = repo.commit(namespace={"noise": np.random.default_rng(5).random(2_000_000)})
    assert codecs(repo, commit.entry("noise").object_id or "") == {CODEC_RAW}
    assert repo.at(commit.id)["noise"].flags.writeable


def test_progress_counts_bytes(repo: stashdb.Repo) -> None:
    big = np.zeros(10_000_000)  # 80 MB
    seen: list[tuple[int, int]] = []
    repo.commit(namespace={"big": big, "small": [1, 2]}, progress=lambda d, t: seen.append((d, t)))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] >= big.nbytes
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    restored: list[tuple[int, int]] = []
    repo.checkout(namespace={}, progress=lambda d, t: restored.append((d, t)))
    assert restored[-1][0] == restored[-1][1] >= big.nbytes
