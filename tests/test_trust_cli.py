"""``stashdb keys …``, ``checkout --trust/--safe``, and signers in ``log``/``show``/``verify``.

Real processes, two users (two key directories) on one store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import update

import stashdb
from conftest import raw_connection
from stashdb.storage import schema

SCRIPT = "import numpy as np\nweights = np.arange(4.0)\nepochs = 3\ndef helper():\n    return 1\n"


def as_user(keys: Path, cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STASHDB_CONFIG_DIR": str(keys), "COLUMNS": "120"}
    env.pop("STASHDB_URL", None)
    done = subprocess.run([sys.executable, "-m", "stashdb", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == code, (done.stdout, done.stderr)
    return done


def test_two_users_keys_trust_revoke_and_safe(tmp_path: Path) -> None:
    alice, bob = tmp_path / "alice-keys", tmp_path / "bob-keys"
    (tmp_path / "train.py").write_text(SCRIPT)
    created = as_user(alice, tmp_path, "keys", "create")
    assert "made signing key" in created.stdout and "made your signing key" in created.stderr
    assert "you have signing key" in as_user(alice, tmp_path, "keys", "create").stdout
    made = as_user(alice, tmp_path, "commit", "-m", "alice's run", "train.py")
    assert "made your signing key" not in made.stderr  # said once, when it was made
    again = as_user(alice, tmp_path, "commit", "-m", "again", "train.py")
    assert "made your signing key" not in again.stderr

    log = as_user(bob, tmp_path, "log").stdout
    assert "untrusted " in log
    refused = as_user(bob, tmp_path, "checkout", "HEAD", "--to", "out.pkl", code=1)
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and "not trusted here" in line
    assert "--trust" in line and "--safe" in line and "Traceback" not in line
    assert not (tmp_path / "out.pkl").exists()
    as_user(bob, tmp_path, "checkout", "HEAD", "--only", "epochs", "--to", "t.pkl", "--trust")
    safe = as_user(bob, tmp_path, "checkout", "HEAD", "--to", "s.pkl", "--safe", "--json",
                   code=1)  # helper is code: refused, the data comes back
    report = json.loads(safe.stdout)
    assert [f["name"] for f in report["failed"]] == ["helper"]
    assert "safe loading refuses" in report["failed"][0]["reason"]

    as_user(alice, tmp_path, "keys", "export", "-o", str(tmp_path / "alice.pub"))
    trusted = as_user(bob, tmp_path, "keys", "trust", str(tmp_path / "alice.pub")).stdout
    alice_id = trusted.split("key ")[1].split()[0]
    as_user(bob, tmp_path, "checkout", "HEAD", "--to", "ok.pkl")
    shown = as_user(bob, tmp_path, "show", "HEAD").stdout
    assert f"(key {alice_id})" in shown and "signed by " in shown
    logged = json.loads(as_user(bob, tmp_path, "log", "--json").stdout)
    assert logged[0]["signed_by"] == {"key": alice_id, "name": logged[0]["signed_by"]["name"],
                                      "trusted": True}
    listed = as_user(bob, tmp_path, "keys", "list").stdout
    assert alice_id in listed and "trusted by you" in listed

    as_user(bob, tmp_path, "keys", "revoke", alice_id[:6])
    revoked = as_user(bob, tmp_path, "checkout", "HEAD", "--to", "no.pkl", code=1)
    assert "revoked" in revoked.stderr


def test_verify_names_tampering_and_sign_all_signs_unsigned_commits(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    (tmp_path / "train.py").write_text(SCRIPT)
    as_user(keys, tmp_path, "commit", "-m", "one", "train.py")
    as_user(keys, tmp_path, "commit", "-m", "two", "train.py")
    assert "ok: everything is sound" in as_user(keys, tmp_path, "verify").stdout
    repo = stashdb.open(tmp_path)
    first = repo.resolve("HEAD~1")
    with raw_connection(repo) as conn:
        conn.execute(update(schema.commits).where(schema.commits.c.id == first)
                     .values(message="rewritten"))
        conn.execute(schema.signatures.delete().where(schema.signatures.c.commit_id
                                                      == repo.resolve("HEAD")))
    said = as_user(keys, tmp_path, "verify", code=1).stdout
    assert f"bad signature {first[:16]}" in said and "unsigned commit" in said
    signed = as_user(keys, tmp_path, "keys", "sign", "--all").stdout
    assert "signed 1 commits" in signed  # the unsigned one; the altered one stays bad
    assert "unsigned commit" not in as_user(keys, tmp_path, "verify", code=1).stdout
    as_user(keys, tmp_path, "keys", "sign", "HEAD~1")  # you vouch for it as it is now
    assert "ok: everything is sound" in as_user(keys, tmp_path, "verify").stdout
