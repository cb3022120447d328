"""What a commit's signature covers, and checking it before anything is unpickled.

The signature is Ed25519 over `payload`: the commit's id and every column of
its row, and its whole manifest with each object's BLAKE3
digest (`stashdb.storage.chunking.object_digest`, a tree over its chunks'
digests). So a changed commit row, manifest row or signature fails here; a
changed chunk, object or layout row fails when that value is read, as its
digest no longer matches the signed one — in both cases before a pickle
opcode runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stashdb.errors import TamperedData, UntrustedSnapshot
from stashdb.model import Commit

from .keys import PublicKey, SigningKey

__all__ = ["Signature", "check", "payload", "sign"]

_DOMAIN = b"stashdb-commit-signature-v1\n"


@dataclass(frozen=True)
class Signature:
    """One commit's signature: who signed it, and the 64 bytes."""

    key_id: str
    signature: bytes


def _same(text: str | None) -> str | None:
    return text


def payload(commit: Commit, blind: Callable[[str | None], str | None] = _same) -> bytes:
    """The bytes a commit's signature is over (canonical JSON; docs/security.md).

    ``blind``: how texts that describe values appear in it — themselves, or in an
    encrypted store keyed hashes of them (`stashdb.storage.sealing.Sealed.blind`),
    so that the signature, checkable by anyone with the public key, confirms no
    guess of a sealed preview or message.
    """
    entries = [
        [e.name, e.kind, e.status, e.object_id, e.slot, e.value_hash, e.digest,
         blind(e.type_name), e.size, e.stored_size, repr(e.seconds), blind(e.preview),
         blind(e.shape), blind(e.literal), blind(e.reason), e.module, e.version]
        for e in sorted(commit.entries, key=lambda e: e.name)
    ]
    # Not the parents: `prune` relinks a kept commit past the ones it drops. A
    # changed link can mislead `log`, never change what a checkout restores.
    body = [
        commit.id, commit.time.isoformat(), blind(commit.message), commit.branch,
        commit.workspace, commit.user, commit.host, commit.python,
        commit.dill, dict(sorted(commit.packages.items())), commit.chunks_written,
        commit.bytes_written, entries,
    ]
    return _DOMAIN + json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def sign(
    commit: Commit, key: SigningKey, blind: Callable[[str | None], str | None] = _same
) -> Signature:
    """``key``'s signature over ``commit``."""
    return Signature(key.key_id, key.sign(payload(commit, blind)))


def check(
    commit: Commit,
    signature: Signature | None,
    trusted: Mapping[str, PublicKey],
    revoked: set[str],
    blind: Callable[[str | None], str | None] = _same,
) -> None:
    """Raise unless ``commit`` is signed by a trusted key and the signature holds.

    Raises:
        UntrustedSnapshot: unsigned, signed by a key not trusted here or revoked,
            or holding values stored before stashdb signed (no digest).
        TamperedData: the signature does not match the commit's contents.
    """
    if signature is None:
        raise UntrustedSnapshot(
            commit.id, "is not signed (written before stashdb signed its commits, or by a "
            "writer that does not sign; Repo.sign_all() signs yours, after review)"
        )
    if signature.key_id in revoked:
        raise UntrustedSnapshot(
            commit.id, f"is signed by key {signature.key_id}, which was revoked", signature.key_id
        )
    key = trusted.get(signature.key_id)
    if key is None:
        raise UntrustedSnapshot(
            commit.id, f"is signed by key {signature.key_id}, which is not trusted here",
            signature.key_id,
        )
    if not key.verify(signature.signature, payload(commit, blind)):
        raise TamperedData(
            commit.id, f"its signature by {key.name} ({key.key_id}) does not match its "
            "contents (the commit row, its manifest or the signature was changed)"
        )
    lacking = [e.name for e in commit.entries if e.object_id and not e.digest]
    if lacking:
        raise UntrustedSnapshot(
            commit.id, f"holds {len(lacking)} values stored before stashdb kept digests "
            f"({lacking[0]!r} …): Repo.sign_all() digests and signs them, after review"
        )
