"""Attacks a security review found against trust, each now a test: someone who can write
the database (never the victim's key directory) tries to run code, launder data through
the victim's signature, steer a session's working directory, or crash stashdb.

Each planted payload appends to a marker file; each test checks it never runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import blake3
import pytest
import xxhash
from sqlalchemy import delete, insert, select, text, update

import stashdb
from conftest import raw_connection
from stashdb.storage import schema


def evil(marker: Path) -> bytes:
    """A protocol-0 pickle whose loading runs ``os.system``."""
    return b"cos\nsystem\n(V" + f"echo ran >> {marker}".encode() + b"\ntR."


def object_of(repo: stashdb.Repo, rev: str, name: str) -> bytes:
    return bytes.fromhex(next(e for e in repo.show(rev).entries if e.name == name).object_id)


def repoint(repo: stashdb.Repo, object_id: bytes, data: bytes) -> None:
    """Make object ``object_id`` one chunk of ``data``, every id and digest column fixed up."""
    from stashdb.storage.chunking import object_digest

    chunk = xxhash.xxh3_128_digest(data)
    with raw_connection(repo) as conn:
        pickler = conn.execute(select(schema.objects.c.pickler)
                               .where(schema.objects.c.id == object_id)).scalar_one()
        conn.execute(insert(schema.chunks).values(id=chunk, raw_size=len(data), codec=0,
                                                  data=data, digest=blake3.blake3(data).digest()))
        conn.execute(delete(schema.object_chunks)
                     .where(schema.object_chunks.c.object_id == object_id))
        conn.execute(insert(schema.object_chunks).values(object_id=object_id, part=0, seq=0,
                                                         chunk_id=chunk, raw_size=len(data)))
        digest = object_digest(pickler, [(0, 0, len(data), blake3.blake3(data).digest())])
        conn.execute(update(schema.objects).where(schema.objects.c.id == object_id)
                     .values(parts=1, raw_size=len(data), stored_size=len(data), digest=digest))


@pytest.mark.parametrize("isolated", [True, False])
def test_a_failed_checkout_never_brings_values_back_unchecked(
    tmp_path: Path, isolated: bool
) -> None:
    marker = tmp_path / "ran"
    with stashdb.Session(tmp_path / "store", isolated=isolated) as s:
        s.execute("x = [1, 2, 3]\ny = 'first'")
        first = s.head
        s.execute("x = [4, 5, 6]")
        repo = stashdb.open(tmp_path / "store")
        repoint(repo, object_of(repo, s.head, "x"), evil(marker))  # the state being left
        with raw_connection(repo) as conn:  # and the target's x cannot be read
            conn.execute(delete(schema.object_chunks).where(
                schema.object_chunks.c.object_id == object_of(repo, first, "x")))
        with pytest.raises(stashdb.StashError):
            s.checkout(first)
    assert not marker.exists()


def test_a_planted_object_is_not_reused_and_signed_by_the_victim(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    scratch = stashdb.init(tmp_path / "scratch")  # the attacker learns the object id
    planted = object_of(scratch, scratch.commit(namespace={"cfg": {"lr": 0.1}}).id, "cfg")
    victim = stashdb.init(tmp_path / "victim")
    victim.commit(namespace={"other": 1})
    with raw_connection(victim) as conn:
        conn.execute(insert(schema.objects).values(id=planted, pickler="pickle", parts=1,
                                                   raw_size=1, stored_size=1, created=0.0))
    repoint(victim, planted, evil(marker))
    made = victim.commit(namespace={"cfg": {"lr": 0.1}})  # the victim commits the same value
    assert {e.name: e.status for e in made.entries}["cfg"] == "stored"  # written anew
    ns: dict[str, Any] = {}
    victim.checkout(namespace=ns)
    assert ns["cfg"] == {"lr": 0.1} and not marker.exists()
    assert victim.verify().ok


def test_sign_all_never_signs_again_what_changed_since(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    repo = stashdb.init(tmp_path / "store")
    repo.commit(namespace={"x": [1, 2], "y": 3})
    target = object_of(repo, "HEAD", "y")
    with raw_connection(repo) as conn:  # x now names y's object, made to look pre-0005
        conn.execute(update(schema.entries).where(schema.entries.c.name == "x")
                     .values(object_id=target, digest=None))
        conn.execute(update(schema.objects).where(schema.objects.c.id == target)
                     .values(digest=None))
    repoint(repo, target, evil(marker))
    with raw_connection(repo) as conn:
        conn.execute(update(schema.objects).where(schema.objects.c.id == target)
                     .values(digest=None))
    report = repo.sign_all()
    assert report.signed == []  # ours, but changed since we signed it: not vouched for
    assert not repo.verify().ok
    with pytest.raises((stashdb.TamperedData, stashdb.UntrustedSnapshot)):
        repo.checkout(namespace={})
    assert not marker.exists()


def test_resume_never_takes_its_working_directory_from_the_store(tmp_path: Path) -> None:
    from stashdb.session import catalog

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with stashdb.Session(tmp_path / "store", branch="work") as s:
        s.execute("x = 1")
    repo = stashdb.open(tmp_path / "store")
    record = catalog.find(repo, "work")
    assert record is not None
    value = {"branch": "work", "created": record.created, "host": record.host,
             "workdir": str(precious)}
    repo.set_note(catalog._key("work"), json.dumps(value))  # the attacker's record
    with stashdb.Session.resume("work", repo=tmp_path / "store") as again:
        assert again.workdir is None
        again.execute("y = 2")
        with pytest.raises(stashdb.WorkerCrashed):
            again.execute("import os; os._exit(3)")
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert not any(n.startswith("file:") for n in repo.show("work").names)


def test_a_working_directory_holding_the_key_directory_is_refused(tmp_path: Path) -> None:
    keys = Path(os.environ["STASHDB_CONFIG_DIR"])
    with pytest.raises(stashdb.InvalidArguments, match="key directory"):
        stashdb.Session(tmp_path / "store", workdir=keys.parent)


def test_safe_loading_never_imports_a_module_a_manifest_names(tmp_path: Path) -> None:
    repo = stashdb.init(tmp_path / "store")
    repo.commit(namespace={"json_module": json, "n": 1})
    with raw_connection(repo) as conn:
        conn.execute(update(schema.entries).where(schema.entries.c.name == "json_module")
                     .values(module="this"))  # importing it prints, a venv.__main__ makes one
    ns: dict[str, Any] = {}
    report = repo.checkout(namespace=ns, safe=True)
    assert ns["n"] == 1 and "json_module" not in ns
    assert "does not import module 'this'" in report.failed[0].reason
    assert "this" not in sys.modules


def test_show_to_writes_no_pickle_that_was_not_signed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    repo = stashdb.init(tmp_path)
    repo.commit(namespace={"df": [1, 2]})
    repoint(repo, object_of(repo, "HEAD", "df"), evil(marker))
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("STASHDB_URL", None)
    done = subprocess.run([sys.executable, "-m", "stashdb", "show", "HEAD:df", "--to", "df.pkl"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "do not match the digest" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "df.pkl").exists()


@pytest.mark.parametrize("column, value", [
    ("objects.parts", 0), ("objects.parts", -1), ("objects.parts", 3_000_000_000),
    ("object_chunks.raw_size", -1), ("object_chunks.raw_size", 2**40),
    ("object_chunks.part", 9), ("object_chunks.chunk_id", "text"), ("chunks.data", "text"),
    ("signatures.signature", "text"), ("trusted_keys.signature", "text"),
])
def test_hostile_rows_are_clear_errors_never_crashes(
    tmp_path: Path, column: str, value: object
) -> None:
    from stashdb.trust.keys import KeyRing

    repo = stashdb.init(tmp_path / "store")
    repo.trust_key(KeyRing(tmp_path / "friend").own().public.openssh)
    repo.commit(namespace={"x": list(range(10)), "y": "ok"})
    table, name = column.split(".")
    with raw_connection(repo) as conn:  # untyped SQL: text where bytes belong, too
        conn.execute(text(f"UPDATE {table} SET {name} = :value"), {"value": value})
    if table == "trusted_keys":  # a team row no stashdb wrote counts for nothing
        assert repo.checkout(namespace={}).failed == []
        assert repo.verifier.keys()[0].keys() == {repo.keyring.own().key_id}
        return
    try:
        report = repo.checkout(namespace={})
        assert report.failed  # refused or damaged, said so
    except stashdb.StashError:
        pass
    assert not repo.verify().ok
    repo.log()
