"""Commands for keys: ``keys create|list|export|trust|revoke|sign`` (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stashdb.cli.app import Json, Store, app, err, open_store, out, print_json
from stashdb.errors import KeyProblem
from stashdb.render import markup_safe as safe
from stashdb.trust.keys import KeyRing

keys_app = typer.Typer(
    help="Signing keys: who wrote a commit, and whose commits you unpickle (docs/security.md).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")

Team = Annotated[
    bool,
    typer.Option("--team", help="In the store's own trusted list (signed by you), for everyone "
                                "who trusts you."),
]


@keys_app.command("create")
def create() -> None:
    """Make your signing key if you have none (the first commit makes it too).

    Example: stashdb keys create
    """
    ring = KeyRing()
    had = ring.has_own()
    key = ring.own()
    verb = "you have" if had else "made"
    out.print(f"{verb} signing key {key.key_id} ({safe(key.public.name)}) in "
              f"{safe(str(ring.directory))}")


@keys_app.command("list")
def list_keys(store: Store = None, as_json: Json = False) -> None:
    """List your key, the keys you trust, the store's trusted list, and revoked keys.

    Example: stashdb keys list
    """
    ring = KeyRing()
    rows: list[dict[str, object]] = []
    own = ring.own().public if ring.has_own() else None
    if own is not None:
        rows.append({"key": own.key_id, "name": own.name, "trust": "yours"})
    revoked = ring.revoked()
    for key in ring.trusted().values():
        if own is None or key.key_id != own.key_id:
            rows.append({"key": key.key_id, "name": key.name, "trust": "trusted by you"})
    if store is not None or _store_here():
        repo = open_store(store)
        trusted, team_revoked = repo.verifier.keys()
        for row in repo.storage.reader.trusted_key_rows():
            state = ("revoked (store list)" if row.revoked else
                     "trusted (store list)" if row.key_id in trusted else
                     "ignored (store list: added by a key you do not trust)")
            rows.append({"key": row.key_id, "name": row.name, "trust": state})
        revoked |= team_revoked
    for key_id in sorted(revoked):
        rows.append({"key": key_id, "name": "", "trust": "revoked"})
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no keys yet: your first commit makes yours (or `stashdb keys create`)")
    for row in rows:
        out.print(f"{row['key']}  {safe(str(row['trust'])):<24} {safe(str(row['name']))}")


def _store_here() -> bool:
    import os

    from stashdb.api import find_store

    return bool(os.environ.get("STASHDB_URL")) or find_store() is not None


@keys_app.command("export")
def export(
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="FILE", help="Write it to FILE (default: stdout)."),
    ] = None,
    store_key: Annotated[
        bool, typer.Option("--store-key", help="The key of the (encrypted) store instead: a "
                                               "secret, for those who may read it.")
    ] = False,
    store: Store = None,
) -> None:
    """Print (or write) your public key, for colleagues' `stashdb keys trust FILE`.

    Example: stashdb keys export -o alice.pub
    """
    if store_key:
        sealer = open_store(store).storage.sealer
        if sealer.key_id is None:
            raise KeyProblem("the store", "it is not encrypted: it has no store key")
        line = KeyRing().export_store_key(sealer.key_id)
    else:
        line = KeyRing().own().public.openssh
    if output is None:
        print(line)
    else:
        output.write_text(line + "\n")
        what = "the store key (a secret)" if store_key else "your public key"
        err.print(f"wrote {what} to {safe(str(output))}")


@keys_app.command("trust")
def trust(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A public key file (keys export).")],
    team: Team = False,
    store: Store = None,
) -> None:
    """Trust commits signed by the key in FILE (a colleague's `stashdb keys export`).

    Example: stashdb keys trust bob.pub
    """
    try:
        text = file.read_text()
    except OSError as exc:
        raise KeyProblem(str(file), f"cannot read it ({exc.strerror})") from None
    if team:
        key = open_store(store).trust_key(text)
        out.print(f"added key {key.key_id} ({safe(key.name)}) to the store's trusted list")
    else:
        kept = KeyRing().trust(text, str(file))
        if isinstance(kept, str):
            out.print(f"kept store key {kept}: you can read the stores encrypted with it")
        else:
            out.print(f"you trust key {kept.key_id} ({safe(kept.name)})")


@keys_app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(metavar="KEY", help="A key id (or its start).")],
    team: Team = False,
    store: Store = None,
) -> None:
    """Stop trusting a key: its commits are refused from now on (unless --trust).

    Example: stashdb keys revoke 3f2a9c1d
    """
    ring = KeyRing()
    if team:
        repo = open_store(store)
        rows = {r.key_id: r for r in repo.storage.reader.trusted_key_rows()}
        match = [k for k in rows if k.startswith(key)]
        if len(match) != 1:
            raise KeyProblem(key, "the store's trusted list has no single key with that id")
        repo.trust_key(rows[match[0]].public_key, revoke=True)
        out.print(f"the store's list now says key {match[0]} is revoked")
        return
    full = ring.revoke(key)
    out.print(f"revoked key {full}: its commits are refused here from now on")


@keys_app.command("sign")
def sign(
    rev: Annotated[str, typer.Argument(metavar="REV", help="Commit to sign.")] = "HEAD",
    all_commits: Annotated[
        bool, typer.Option("--all", help="Every commit not signed yet (after review).")
    ] = False,
    store: Store = None,
    as_json: Json = False,
) -> None:
    """Sign a commit (or, with --all, every unsigned one) with your key: you vouch for it.

    Example: stashdb keys sign --all
    """
    repo = open_store(store)
    if all_commits:
        report = repo.sign_all()
        if as_json:
            print_json({"signed": report.signed, "lacking": report.lacking,
                        "digested": report.digested, "unreadable": report.unreadable})
        else:
            out.print(str(report))
        if report.lacking:
            raise typer.Exit(1)
        return
    commit = repo.sign(rev)
    out.print(f"signed {commit.short_id} with key {repo.keyring.own().key_id}")
