"""Which keys a store's reader trusts, and checking a commit against them.

Trusted: the user's own key, the keys in their key directory's ``trusted/``,
and the keys of the store's own list (``trusted_keys``: a team's) whose row
is signed by a key the user trusts directly — one step, never a chain.
Revoked: the key directory's ``revoked`` list, and rows of the store's list
marked revoked by a directly trusted signer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from stashdb.errors import KeyProblem
from stashdb.model import Commit

from .keys import KeyRing, PublicKey
from .signing import Signature, check

__all__ = ["Signer", "Verifier", "team_row_payload"]


class SignatureSource(Protocol):
    """What the verifier reads from a store (its `stashdb.storage.reader.Reader`)."""

    def signatures(self, commit_ids: Iterable[str]) -> dict[str, tuple[str, bytes]]: ...

    def trusted_key_rows(self) -> list[Any]: ...


@dataclass(frozen=True)
class Signer:
    """Who signed a commit, as `log` and `show` say it."""

    key_id: str | None  # None: unsigned
    name: str | None  # the key's name, when the key is known here
    trusted: bool


def team_row_payload(key_id: str, public_key: str, name: str, added: float,
                     revoked: float | None) -> bytes:
    """The bytes a row of a store's trusted-key list is signed over."""
    body = [key_id, public_key, name, repr(added), repr(revoked) if revoked else None]
    return b"stashdb-trusted-key-v1\n" + json.dumps(body, separators=(",", ":")).encode()


class Verifier:
    """Checks commits of one store against the keys trusted by one key ring."""

    def __init__(
        self, source: SignatureSource, keyring: KeyRing,
        blind: Callable[[str | None], str | None] | None = None,
    ) -> None:
        self._source = source
        self.keyring = keyring
        self._blind = blind  # an encrypted store's (`Sealed.blind`)

    def keys(self) -> tuple[dict[str, PublicKey], set[str]]:
        """The keys trusted for this store, and the ids revoked."""
        direct = self.keyring.trusted()
        revoked = set(self.keyring.revoked())
        team: dict[str, PublicKey] = {}
        for row in self._source.trusted_key_rows():
            signer = direct.get(str(row.signer))
            try:
                data = team_row_payload(str(row.key_id), str(row.public_key), str(row.name),
                                        float(row.added), row.revoked and float(row.revoked))
                sound = signer is not None and signer.verify(bytes(row.signature), data)
            except (TypeError, ValueError):
                sound = False  # a row no stashdb wrote
            if not sound:
                continue  # added by someone not trusted here, or changed since: ignored
            if row.revoked:
                revoked.add(str(row.key_id))
                continue
            try:
                key = PublicKey.parse(row.public_key, f"the store's trusted key {row.key_id}")
            except KeyProblem:
                continue
            if key.key_id == row.key_id:
                team[key.key_id] = key
        trusted = {**team, **direct}
        return {k: v for k, v in trusted.items() if k not in revoked}, revoked

    def check(self, commit: Commit) -> None:
        """Raise unless ``commit`` is signed by a trusted key, intact.

        Raises:
            UntrustedSnapshot, TamperedData: see `stashdb.trust.signing.check`.
        """
        found = self._source.signatures([commit.id]).get(commit.id)
        signature = Signature(*found) if found is not None else None
        trusted, revoked = self.keys()
        if self._blind is None:
            check(commit, signature, trusted, revoked)
        else:
            check(commit, signature, trusted, revoked, self._blind)

    def signers(self, commit_ids: Iterable[str]) -> dict[str, Signer]:
        """Who signed each commit (without checking the signatures: `verify` does)."""
        ids = list(commit_ids)
        found = self._source.signatures(ids)
        trusted, _ = self.keys()
        result = {}
        for cid in ids:
            if cid not in found:
                result[cid] = Signer(None, None, False)
                continue
            key_id = found[cid][0]
            key = trusted.get(key_id)
            result[cid] = Signer(key_id, key.name if key else None, key is not None)
        return result
