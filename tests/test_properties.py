"""Property tests: random nested values round-trip, and equal values dedupe."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stashdb

atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.complex_numbers(allow_nan=False)
)
hashables = st.recursive(atoms, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8)
values = st.recursive(
    atoms,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=5)
        | st.sets(hashables, max_size=5)
    ),
    max_leaves=25,
)
namespaces = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), values, max_size=6)


def same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0 and compares types."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


@pytest.fixture(scope="module")
def shared_repo(tmp_path_factory: pytest.TempPathFactory) -> stashdb.Repo:
    return stashdb.Repo.open(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'stash.db'}", create=True)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ns=namespaces)
def test_random_nested_values_round_trip(shared_repo: stashdb.Repo, ns: dict[str, Any]) -> None:
    commit = shared_repo.commit(namespace=ns)
    assert commit.skipped == []
    restored: dict[str, Any] = {}
    shared_repo.checkout(commit.id, namespace=restored)
    assert same(restored, ns)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=values)
def test_committing_the_same_value_again_writes_nothing(
    shared_repo: stashdb.Repo, value: Any
) -> None:
    shared_repo.commit(namespace={"v": value})
    again = shared_repo.commit(namespace={"v": value})
    assert again.bytes_written == 0 and again.reused == ["v"]


def test_store_file_is_real(shared_repo: stashdb.Repo) -> None:
    assert Path(shared_repo.url.removeprefix("sqlite:///")).is_file()
