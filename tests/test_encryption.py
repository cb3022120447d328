"""Encryption at rest: sealed chunks, keyed ids, sealed descriptions, store keys.

Real SQLite files and a real PostgreSQL server; the database is read as an
attacker would, with our own connection, looking for a known value.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, update
from test_trust_cli import as_user

import stashdb
from conftest import BACKENDS, postgres_schema, postgres_url, raw_connection
from stashdb.storage import schema
from stashdb.trust.keys import KeyRing

SECRET = "the-launch-code-4242"


@pytest.fixture(params=BACKENDS)
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of new, empty store URLs on the backend."""
    contexts: list[Any] = []

    def make(name: str) -> str:
        if request.param == "sqlite":
            return str(tmp_path / name)
        context = postgres_schema(postgres_url())
        contexts.append(context)
        return str(context.__enter__())

    yield make
    for context in contexts:
        context.__exit__(None, None, None)


def _everything_stored(repo: stashdb.Repo) -> bytes:
    """Every byte of every row of the store's tables, as an attacker reading it gets them."""
    found = []
    with raw_connection(repo) as conn:
        for table in schema.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                for value in row:
                    found.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(found)


def test_the_database_holds_no_plaintext_and_dedup_still_works(make_url: Any) -> None:
    repo = stashdb.init(make_url("a"), encrypt=True)
    values = {"secret": SECRET, "table": {"code": SECRET * 3}, "arr": np.arange(50_000)}
    first = repo.commit(f"first, about {SECRET}", namespace=values)
    again = repo.commit("again", namespace={**values, "n": 1})
    assert {e.name: e.status for e in again.entries} == {
        "secret": "reused", "table": "reused", "arr": "reused", "n": "stored"}
    assert again.bytes_written < 1000  # nothing of the values written twice
    stored = _everything_stored(repo)
    assert SECRET.encode() not in stored and b"launch" not in stored
    assert np.arange(50_000).tobytes()[:64] not in stored
    shown = {e.name: e for e in repo.show(first.id).entries}
    assert SECRET in shown["secret"].preview and shown["arr"].type_name == "numpy.ndarray"
    ns: dict[str, Any] = {}
    repo.checkout(first.id, namespace=ns)
    assert ns["secret"] == SECRET and ns["table"] == {"code": SECRET * 3}
    np.testing.assert_array_equal(ns["arr"], np.arange(50_000))
    assert repo.verify().ok
    assert repo.diff(first.id, again.id)  # browsing works with the key
    assert repo.log()[-1].message == f"first, about {SECRET}"


def test_a_session_on_an_encrypted_store_leaves_no_plaintext(make_url: Any) -> None:
    url = make_url("s")
    stashdb.init(url, encrypt=True)
    with stashdb.Session(url) as s:
        s.execute(f"x = {SECRET!r}")
        with pytest.raises(stashdb.WorkerCrashed):
            s.execute("import os; os._exit(1)")  # the recovery reads the sealed state
        assert s.execute("x").value == repr(SECRET)
        assert s.log()[0].message == f"[1] x = {SECRET!r}"
        with pytest.raises(stashdb.InvalidArguments, match="encrypted store"):
            s.snapshot_state()
    assert SECRET.encode() not in _everything_stored(stashdb.open(url))


def test_equal_values_in_two_encrypted_stores_have_different_ids(make_url: Any) -> None:
    ids = []
    for name in ("one", "two"):
        repo = stashdb.init(make_url(name), encrypt=True)
        commit = repo.commit(namespace={"secret": SECRET})
        with raw_connection(repo) as conn:
            chunk_ids = {bytes(r.id) for r in conn.execute(select(schema.chunks.c.id))}
        ids.append((commit.entries[0].object_id, chunk_ids))
    plain = stashdb.init(make_url("plain"))
    plain_entry = plain.commit(namespace={"secret": SECRET}).entries[0]
    assert ids[0][0] != ids[1][0] != plain_entry.object_id
    assert not ids[0][1] & ids[1][1]


def test_a_missing_or_wrong_store_key_is_a_clear_error(make_url: Any, tmp_path: Path) -> None:
    url = make_url("s")
    repo = stashdb.init(url, encrypt=True)
    repo.commit(namespace={"secret": SECRET})
    key_id = repo.storage.sealer.key_id
    assert key_id is not None
    stranger = KeyRing(tmp_path / "stranger")
    opened = stashdb.Repo.open(repo.url)  # the default key ring: has the key
    assert opened.at("HEAD")["secret"] == SECRET
    storage = stashdb.Repo.open(repo.url).storage
    with pytest.raises(stashdb.StoreKeyMissing, match=key_id):
        storage.unseal(stranger.store_key)
    wrong = tmp_path / "wrong"
    KeyRing(wrong).add_store_key(os.urandom(32))
    bad = wrong / "store-keys" / f"{key_id}.key"
    bad.write_text(os.urandom(32).hex())  # a file of that name holding another key
    with pytest.raises(stashdb.KeyProblem, match=f"store key {key_id}"):
        storage.unseal(KeyRing(wrong).store_key)


def test_a_changed_sealed_chunk_is_damage_not_a_payload(make_url: Any) -> None:
    repo = stashdb.init(make_url("s"), encrypt=True)
    repo.commit(namespace={"secret": SECRET, "other": 5})
    object_id = bytes.fromhex(next(e for e in repo.show("HEAD").entries
                                   if e.name == "secret").object_id)
    with raw_connection(repo) as conn:
        chunk = conn.execute(select(schema.object_chunks.c.chunk_id)
                             .where(schema.object_chunks.c.object_id == object_id)).scalar_one()
        data = conn.execute(select(schema.chunks.c.data)
                            .where(schema.chunks.c.id == chunk)).scalar_one()
        flipped = bytes(data[:-1]) + bytes([data[-1] ^ 1])
        conn.execute(update(schema.chunks).where(schema.chunks.c.id == chunk)
                     .values(data=flipped))
    report = repo.checkout(namespace={}, trust=True)
    assert [f.name for f in report.failed] == ["secret"] and "other" in report.restored
    assert not repo.verify().ok


def test_only_a_new_store_is_encrypted_and_its_state_stays_in(make_url: Any) -> None:
    repo = stashdb.init(make_url("s"))
    repo.commit(namespace={"x": 1})
    with pytest.raises(stashdb.InvalidArguments, match="holds commits already"):
        repo.encrypt()
    sealed = stashdb.init(make_url("t"), encrypt=True)
    sealed.commit(namespace={"x": 1})
    assert stashdb.init(sealed.url, encrypt=True).storage.sealer.key_id == \
        sealed.storage.sealer.key_id  # again: the same store, the same key
    with pytest.raises(stashdb.InvalidArguments, match="encrypted store"):
        sealed.bundle("HEAD")


def test_the_store_key_is_shared_with_keys_export_and_trust(tmp_path: Path) -> None:
    owner, reader = tmp_path / "owner-keys", tmp_path / "reader-keys"

    def run(keys: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        return as_user(keys, tmp_path, *args, code=code)

    made = run(owner, "init", "--encrypt").stdout
    assert "encrypted: store key" in " ".join(made.split())
    (tmp_path / "s.py").write_text(f"secret = {SECRET!r}\n")
    run(owner, "commit", "s.py")
    missing = run(reader, "log", code=1).stderr
    assert "is encrypted with store key" in missing and "keys export --store-key" in missing
    run(owner, "keys", "export", "--store-key", "-o", str(tmp_path / "store.key"))
    run(owner, "keys", "export", "-o", str(tmp_path / "owner.pub"))
    assert "kept store key" in run(reader, "keys", "trust", str(tmp_path / "store.key")).stdout
    run(reader, "keys", "trust", str(tmp_path / "owner.pub"))
    shown = run(reader, "show", "HEAD").stdout
    assert SECRET in shown
    run(reader, "checkout", "HEAD", "--to", str(tmp_path / "out.pkl"))
    raw = (tmp_path / ".stashdb" / "stash.db").read_bytes()
    assert SECRET.encode() not in raw


def test_neither_ids_nor_signatures_confirm_a_guess_of_a_sealed_text(make_url: Any) -> None:
    from stashdb.storage.commits import commit_id_of
    from stashdb.trust.signing import payload

    repo = stashdb.init(make_url("s"), encrypt=True)
    made = repo.commit(f"salary is {SECRET}", namespace={"salary": 184250})
    repo.tag("v1", message=f"tag about {SECRET}")
    with raw_connection(repo) as conn:
        stored_time = conn.execute(select(schema.commits.c.time)).scalar_one()
    guess = commit_id_of(list(made.parents), stored_time, made.message, made.branch,
                         made.entries)
    assert guess != made.id  # the plain id of the right guess is not the id
    keyed = commit_id_of(list(made.parents), stored_time, made.message, made.branch,
                         made.entries, repo.storage.sealer)
    assert keyed == made.id  # (the guess was computed right: with the key, it is the id)
    with raw_connection(repo) as conn:
        signature = conn.execute(select(schema.signatures.c.signature)).scalar_one()
    public = repo.keyring.own().public
    assert not public.verify(signature, payload(made))  # the plain texts do not check
    assert public.verify(signature, payload(made, repo.storage.sealer.blind))
    assert SECRET.encode() not in _everything_stored(repo)
    assert repo.tags()[0].message == f"tag about {SECRET}"
