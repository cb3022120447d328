"""Trust: signed commits, verification before anything is unpickled, keys, safe loading.

Real stores (SQLite and PostgreSQL), real Ed25519 keys in temporary key
directories, and tampering done the way an attacker with write access to the
database would: rows changed behind stashdb's back with our own connection.
Every planted payload would create a marker file; each test checks it never
runs (and, where it proves the test can fail, that it does run with trust=True).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xxhash
from sqlalchemy import update

import stashdb
from conftest import BACKENDS, postgres_schema, postgres_url, raw_connection
from stashdb.storage import schema
from stashdb.trust.keys import KeyRing


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "store")
    else:
        with postgres_schema(postgres_url()) as made:
            yield made


class Planted:
    """Unpickling it runs a shell command that creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


def _as(url: str, ring: KeyRing) -> stashdb.Repo:
    """The store as another user sees it: its own Repo, with that user's keys."""
    repo = stashdb.Repo.open(stashdb.open(url, create=True).url)
    repo.keyring = ring
    return repo


def _store(url: str) -> stashdb.Repo:
    repo = stashdb.init(url)
    repo.commit("data", namespace={"x": 41, "numbers": [1, 2, 3], "label": "ok"})
    return repo


def _entry(repo: stashdb.Repo, name: str) -> Any:
    return next(e for e in repo.show("HEAD").entries if e.name == name)


def _plant_value(repo: stashdb.Repo, name: str, marker: Path) -> None:
    """Point ``name``'s object at a chunk holding a payload, keeping every xxh3 id right."""
    evil = pickle.dumps(Planted(marker), protocol=5)
    chunk = xxhash.xxh3_128_digest(evil)
    object_id = bytes.fromhex(_entry(repo, name).object_id)
    with raw_connection(repo) as conn:
        conn.execute(schema.chunks.insert().values(id=chunk, raw_size=len(evil), codec=0,
                                                   data=evil))
        conn.execute(update(schema.object_chunks)
                     .where(schema.object_chunks.c.object_id == object_id)
                     .values(chunk_id=chunk, raw_size=len(evil)))


def test_commits_are_signed_and_check_out(url: str) -> None:
    repo = _store(url)
    commit = repo.show("HEAD")
    signer = repo.signers([commit])[commit.id]
    assert signer.trusted and signer.key_id == repo.keyring.own().key_id
    assert all(e.digest and len(e.digest) == 64 for e in commit.entries)
    ns: dict[str, Any] = {}
    repo.checkout(namespace=ns)
    assert (ns["x"], ns["numbers"], ns["label"]) == (41, [1, 2, 3], "ok")


@pytest.mark.parametrize("target", ["chunk", "object", "layout"])
def test_tampered_values_are_refused_before_any_unpickling(
    url: str, tmp_path: Path, target: str
) -> None:
    repo = _store(url)
    marker = tmp_path / f"ran-{target}"
    object_id = bytes.fromhex(_entry(repo, "numbers").object_id)
    if target == "chunk":
        _plant_value(repo, "numbers", marker)
    elif target == "object":  # the same bytes, said to be dill's: another digest
        with raw_connection(repo) as conn:
            conn.execute(update(schema.objects).where(schema.objects.c.id == object_id)
                         .values(pickler="dill" if _pickler(repo, object_id) == "pickle"
                                 else "pickle"))
    else:  # a layout row that says another size
        with raw_connection(repo) as conn:
            conn.execute(update(schema.object_chunks)
                         .where(schema.object_chunks.c.object_id == object_id)
                         .values(seq=7))
    ns: dict[str, Any] = {}
    with pytest.raises(stashdb.TamperedData, match="'numbers'") as caught:
        repo.checkout(namespace=ns)
    assert caught.value.name == "numbers" and ns == {}  # nothing applied
    with pytest.raises(stashdb.TamperedData):
        repo.at("HEAD")["numbers"]
    assert repo.at("HEAD")["x"] == 41  # the other values are sound, and verified
    assert not marker.exists()
    if target == "chunk":  # the test can fail: without the check, the payload runs
        repo.checkout(namespace={}, trust=True)
        assert marker.exists()


def _pickler(repo: stashdb.Repo, object_id: bytes) -> str:
    with raw_connection(repo) as conn:
        return str(conn.execute(schema.objects.select()
                                .where(schema.objects.c.id == object_id)).one().pickler)


@pytest.mark.parametrize("target", ["commit row", "manifest row", "signature"])
def test_tampered_commits_are_refused(url: str, tmp_path: Path, target: str) -> None:
    repo = _store(url)
    commit_id = repo.resolve("HEAD")
    marker = tmp_path / "ran"
    _plant_value(repo, "numbers", marker)  # a payload waiting behind the changed row
    with raw_connection(repo) as conn:
        if target == "commit row":
            conn.execute(update(schema.commits).where(schema.commits.c.id == commit_id)
                         .values(message="harmless"))
        elif target == "manifest row":  # the attacker also fixes the digest: the signature
            evil = pickle.dumps(Planted(marker), protocol=5)
            conn.execute(update(schema.entries)
                         .where(schema.entries.c.commit_id == commit_id,
                                schema.entries.c.name == "numbers")
                         .values(digest=bytes(32), preview=repr(len(evil))))
        else:
            row = conn.execute(schema.signatures.select()).one()
            flipped = bytes([row.signature[0] ^ 1]) + bytes(row.signature[1:])
            conn.execute(update(schema.signatures).values(signature=flipped))
    with pytest.raises(stashdb.TamperedData, match=r"signature .* does not match"):
        repo.checkout(namespace={})
    with pytest.raises(stashdb.TamperedData):
        repo.at("HEAD")
    assert not marker.exists()


def test_keys_trust_and_revoke(url: str, tmp_path: Path) -> None:
    alice = KeyRing(tmp_path / "alice")
    bob = KeyRing(tmp_path / "bob")
    _as(url, alice).commit("alice's", namespace={"x": 1})
    theirs = _as(url, bob)
    with pytest.raises(stashdb.UntrustedSnapshot, match="not trusted here") as caught:
        theirs.checkout(namespace={})
    assert caught.value.key_id == alice.own().key_id
    ns: dict[str, Any] = {}
    theirs.checkout(namespace=ns, trust=True)
    assert ns["x"] == 1
    bob.trust(alice.own().public.openssh, "alice.pub")
    theirs.checkout(namespace={})
    assert theirs.signers([theirs.show("HEAD")])[theirs.resolve("HEAD")].trusted
    bob.revoke(alice.own().key_id[:6])
    with pytest.raises(stashdb.UntrustedSnapshot, match="revoked"):
        theirs.checkout(namespace={})


def test_a_team_list_in_the_store_is_trusted_through_its_signer(url: str, tmp_path: Path) -> None:
    lead, carol, bob = (KeyRing(tmp_path / n) for n in ("lead", "carol", "bob"))
    repo = _as(url, carol)
    repo.commit("carol's", namespace={"x": 2})
    reader = _as(url, bob)
    with pytest.raises(stashdb.UntrustedSnapshot):
        reader.checkout(namespace={})
    lead_repo = _as(url, lead)
    lead_repo.trust_key(carol.own().public.openssh)  # the lead adds carol to the store's list
    with pytest.raises(stashdb.UntrustedSnapshot):
        reader.checkout(namespace={})  # bob does not trust the lead yet: the row counts for nothing
    bob.trust(lead.own().public.openssh, "lead.pub")
    reader.checkout(namespace={})
    with raw_connection(repo) as conn:  # a row changed behind the lead's back is ignored
        conn.execute(update(schema.trusted_keys).values(name="mallory"))
    with pytest.raises(stashdb.UntrustedSnapshot):
        reader.checkout(namespace={})
    lead_repo.trust_key(carol.own().public.openssh, revoke=True)
    with pytest.raises(stashdb.UntrustedSnapshot, match="revoked"):
        reader.checkout(namespace={})


def test_safe_mode_loads_data_and_refuses_code_even_when_signed(
    url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    frame = pd.DataFrame({"a": [1, 2], "when": pd.to_datetime(["2026-01-01", "2026-02-01"]),
                          "kind": pd.Categorical(["x", "y"])})
    repo = stashdb.init(url)

    def helper() -> int:
        return 1

    repo.commit("mixed", namespace={"arr": np.arange(5.0), "frame": frame, "helper": helper,
                                    "planted": Planted(marker), "n": 3})
    stranger = _as(url, KeyRing(tmp_path / "stranger"))  # trusts nobody here
    ns: dict[str, Any] = {}
    report = stranger.checkout(namespace=ns, safe=True)
    np.testing.assert_array_equal(ns["arr"], np.arange(5.0))
    pd.testing.assert_frame_equal(ns["frame"], frame)
    assert ns["n"] == 3 and "helper" not in ns and "planted" not in ns
    reasons = {f.name: f.reason for f in report.failed}
    assert "posix.system" in reasons["planted"] or "os.system" in reasons["planted"]
    assert "safe loading refuses" in reasons["helper"]
    with pytest.raises(stashdb.UnsafeGlobal):
        repo.at("HEAD", safe=True)["planted"]  # signed by ourselves: still refused
    assert not marker.exists()


def test_verify_names_every_bad_signature_and_value(url: str, tmp_path: Path) -> None:
    repo = _store(url)
    repo.commit("second", namespace={"x": 42, "numbers": [1, 2, 3], "label": "ok"})
    assert repo.verify().ok
    first = repo.resolve("HEAD~1")
    with raw_connection(repo) as conn:
        conn.execute(update(schema.commits).where(schema.commits.c.id == first)
                     .values(message="rewritten"))
    _plant_value(repo, "numbers", tmp_path / "ran")
    report = repo.verify()
    assert not report.ok
    said = str(report)
    assert first[:8] in said and "signature" in said and "numbers" in said


def test_a_state_from_an_untrusted_writer_is_refused_by_restore_state(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    alice = _as(str(tmp_path / "alice-store"), KeyRing(tmp_path / "alice"))
    alice.commit("a state", namespace={"planted": Planted(marker), "n": 1}, branch="main")
    blob = alice.bundle("HEAD")
    bob = _as(str(tmp_path / "bob-store"), KeyRing(tmp_path / "bob"))
    with pytest.raises(stashdb.UntrustedSnapshot, match="not trusted here"):
        bob.add_bundle(blob, branch="from-alice", message="restore")
    assert bob.storage.reader.find_ref("from-alice") is None  # nothing stored
    # A session (its worker signs and checks with this test run's keys) refuses it too.
    with stashdb.Session(tmp_path / "session-store") as s:
        with pytest.raises(stashdb.UntrustedSnapshot):
            s.restore_state(blob)
        assert s.show().names == []
    assert not marker.exists()
    KeyRing(tmp_path / "bob").trust(KeyRing(tmp_path / "alice").own().public.openssh, "a.pub")
    bob.add_bundle(blob, branch="from-alice", message="restore")  # trusted now: stored
    assert bob.show("from-alice").names == ["n", "planted"]


@pytest.mark.parametrize("line", [
    "garbage", "ssh-ed25519 !!!not-base64!!! me",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 me",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUWg29p3mgTnd4ga1Ln3nTq0YOU9h5iwCUiuO55 me",
])
def test_a_file_that_is_no_ed25519_public_key_is_refused(tmp_path: Path, line: str) -> None:
    ring = KeyRing(tmp_path / "keys")
    with pytest.raises(stashdb.KeyProblem, match=r"friend\.pub"):
        ring.trust(line, "friend.pub")
    assert ring.trusted() == {}


def test_an_exported_key_line_is_what_cryptography_reads(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    own = KeyRing(tmp_path / "keys").own()
    parsed = serialization.load_ssh_public_key(own.public.openssh.encode())
    raw = parsed.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    from stashdb.trust.keys import PublicKey

    assert PublicKey.parse(own.public.openssh, "x").key_id == own.key_id
    assert own.key_id == __import__("hashlib").sha256(raw).hexdigest()[:16]
