"""Chunks are stored once: unchanged values cost hashing, nothing more."""

from __future__ import annotations

import numpy as np

import stashdb
from conftest import raw_connection
from stashdb.storage import schema
from stashdb.storage.chunking import CHUNK_SIZE


def count_chunks(repo: stashdb.Repo) -> int:
    from sqlalchemy import func, select

    with raw_connection(repo) as conn:
        return conn.execute(select(func.count()).select_from(schema.chunks)).scalar_one()


def store_bytes(repo: stashdb.Repo) -> int:
    from sqlalchemy import func, select

    with raw_connection(repo) as conn:
        return conn.execute(select(func.sum(func.length(schema.chunks.c.data)))).scalar_one()


def workspace() -> dict[str, object]:
    rng = np.random.default_rng(1)
    return {
        "weights": rng.random(1_000_000),  # 8 MB, incompressible
        "records": [{"id": i, "name": f"row {i}"} for i in range(20_000)],
        "threshold": 0.5,
    }


def test_committing_twice_without_change_writes_no_chunk(repo: stashdb.Repo) -> None:
    ns = workspace()
    first = repo.commit("one", namespace=ns)
    chunks_before = count_chunks(repo)
    second = repo.commit("two", namespace=ns)
    assert first.chunks_written > 0
    assert second.chunks_written == 0 and second.bytes_written == 0
    assert second.reused == ["records", "threshold", "weights"] and second.stored == []
    assert count_chunks(repo) == chunks_before


def test_changing_one_small_variable_writes_only_that_variable(repo: stashdb.Repo) -> None:
    ns = workspace()
    repo.commit("one", namespace=ns)
    ns["threshold"] = 0.75
    commit = repo.commit("two", namespace=ns)
    assert commit.stored == ["threshold"]
    assert commit.reused == ["records", "weights"]
    assert commit.chunks_written == 1
    assert commit.bytes_written < 0.001 * store_bytes(repo)


def test_equal_values_under_different_names_are_stored_once(repo: stashdb.Repo) -> None:
    data = np.arange(1_000_000)
    commit = repo.commit(namespace={"a": data, "b": data.copy()})
    assert commit.entry("a").object_id == commit.entry("b").object_id
    assert commit.stored == ["a"] and commit.reused == ["b"]


def test_a_small_change_in_a_large_array_rewrites_only_its_chunk(repo: stashdb.Repo) -> None:
    big = np.random.default_rng(2).random(3 * CHUNK_SIZE // 8)  # three chunks
    repo.commit(namespace={"big": big})
    big[10] = -1.0
    commit = repo.commit(namespace={"big": big})
    assert commit.chunks_written == 1  # only the buffer chunk holding big[10]; the stream is unchanged
    assert commit.bytes_written < 1.2 * CHUNK_SIZE
    ns: dict[str, object] = {}
    repo.checkout(namespace=ns)
    assert np.array_equal(ns["big"], big)


def test_compressible_data_is_compressed_and_random_data_is_not(repo: stashdb.Repo) -> None:
    commit = repo.commit(
        namespace={"zeros": np.zeros(1_000_000), "noise": np.random.default_rng(3).random(100_000)}
    )
    assert commit.entry("zeros").stored_size < commit.entry("zeros").size / 100
    assert commit.entry("noise").stored_size >= commit.entry("noise").size
