"""Keys: the user's own Ed25519 signing key, the public keys they trust, the ones revoked.

Everything lives in one directory (``$STASHDB_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/stashdb``, else ``~/.config/stashdb``), never in a store:

- ``signing_key``: the private key (PKCS#8 PEM, mode 0600), made on first use;
- ``signing_key.pub``: its public half, one OpenSSH line (``ssh-ed25519 AAAA… name``);
- ``trusted/<key id>.pub``: colleagues' public keys (``stashdb keys trust FILE``);
- ``revoked``: key ids no longer trusted, one a line (``stashdb keys revoke``);
- ``store-keys/<key id>.key``: the keys of encrypted stores (mode 0600), made by
  ``stashdb init --encrypt`` and shared as a line ``stashdb-store-key ID HEX``.

A key id is the first 16 hex digits of the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import getpass
import hashlib
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stashdb.errors import KeyProblem

__all__ = ["CONFIG_ENV", "KeyRing", "PublicKey", "SigningKey", "config_dir"]

#: Names the key directory (tests and CI point it at a temporary one).
CONFIG_ENV = "STASHDB_CONFIG_DIR"


def config_dir() -> Path:
    """The directory of the user's keys."""
    given = os.environ.get(CONFIG_ENV)
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "stashdb"


def _key_id(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    """A public key: its id, the name it was made under, and its OpenSSH line."""

    key_id: str
    name: str
    openssh: str

    @classmethod
    def parse(cls, text: str, where: str) -> PublicKey:
        """The key of one OpenSSH line (``ssh-ed25519 AAAA… name``).

        Raises:
            KeyProblem: it is not an Ed25519 public key.
        """
        line = text.strip()
        raw = _raw_ed25519(line, where)
        parts = line.split(None, 2)
        name = parts[2] if len(parts) > 2 else "unnamed"
        return cls(_key_id(raw), name, line)

    def verify(self, signature: bytes, data: bytes) -> bool:
        """Whether ``signature`` is this key's over ``data``."""
        from cryptography.exceptions import InvalidSignature

        key = _loaded(self.openssh)
        try:
            key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _raw_ed25519(line: str, where: str) -> bytes:
    """The 32 raw bytes of an ``ssh-ed25519`` public key line (RFC 8709's wire form).

    Read here rather than by cryptography's ``load_ssh_public_key``: importing
    its serialization module costs 24 ms (measured), a third of what a fresh
    process takes to check a commit; the form is two length-prefixed strings.
    """
    parts = line.split()
    try:
        blob = base64.b64decode(parts[1], validate=True)
        first = int.from_bytes(blob[:4], "big")
        kind, rest = blob[4 : 4 + first], blob[4 + first :]
        size = int.from_bytes(rest[:4], "big")
        raw = rest[4 : 4 + size]
    except (IndexError, ValueError):
        raise KeyProblem(
            where, "not an ssh-ed25519 public key line (`stashdb keys export` writes one)"
        ) from None
    if parts[0] != "ssh-ed25519" or kind != b"ssh-ed25519":
        raise KeyProblem(where, "not an Ed25519 key: stashdb signs with Ed25519 only")
    if size != 32 or len(raw) != 32 or len(rest) != 4 + size:
        raise KeyProblem(where, "its key is not 32 bytes: not an ssh-ed25519 public key")
    return raw


@functools.lru_cache(maxsize=64)
def _loaded(openssh: str) -> Any:
    """A public key line, parsed once per process (a checkout checks one per commit)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(_raw_ed25519(openssh, "a trusted key"))


class SigningKey:
    """The user's private key: signs commits and trusted-key rows."""

    def __init__(self, private: Any, name: str) -> None:
        from cryptography.hazmat.primitives import serialization

        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        line = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        self.public = PublicKey(_key_id(raw), name, f"{line} {name}")

    @property
    def key_id(self) -> str:
        """The id of its public key."""
        return self.public.key_id

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature over ``data`` (64 bytes)."""
        signature: bytes = self._private.sign(data)
        return signature


class KeyRing:
    """The keys of one key directory (default: `config_dir`), read when asked."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else config_dir()
        self._own: SigningKey | None = None

    @property
    def _private_path(self) -> Path:
        return self.directory / "signing_key"

    def has_own(self) -> bool:
        """Whether the user has a signing key yet."""
        return self._private_path.exists()

    def own(self) -> SigningKey:
        """The user's signing key, made (and said so on stderr, once) if there is none.

        Raises:
            KeyProblem: the key file exists but cannot be read as a key.
        """
        if self._own is None:
            if not self._private_path.exists():
                self._create()
            self._own = self._load()
        return self._own

    def _load(self) -> SigningKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = self._private_path
        try:
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise KeyProblem(str(path), f"cannot read the signing key ({exc})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyProblem(str(path), "not an Ed25519 private key")
        public = self.directory / "signing_key.pub"
        name = _default_name()
        with contextlib.suppress(OSError, IndexError):
            name = public.read_text().split(None, 2)[2].strip()
        return SigningKey(private, name)

    def _create(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        self.directory.mkdir(parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:  # O_EXCL: two processes making the key at once keep the first one's
            fd = os.open(self._private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        key = SigningKey(private, _default_name())
        (self.directory / "signing_key.pub").write_text(key.public.openssh + "\n")
        print(
            f"stashdb: made your signing key {key.key_id} in {self.directory} (every commit "
            "you write is signed with it; `stashdb keys export` gives colleagues its public half)",
            file=sys.stderr,
        )

    def trusted(self) -> dict[str, PublicKey]:
        """The keys trusted here: the user's own and those in ``trusted/``, minus revoked ones."""
        found: dict[str, PublicKey] = {}
        if self.has_own():
            own = self._own_public()
            found[own.key_id] = own
        folder = self.directory / "trusted"
        if folder.is_dir():
            for path in sorted(folder.glob("*.pub")):
                key = PublicKey.parse(path.read_text(), str(path))
                found[key.key_id] = key
        revoked = self.revoked()
        return {k: v for k, v in found.items() if k not in revoked}

    def _own_public(self) -> PublicKey:
        """The user's public key, from ``signing_key.pub`` (no private key loaded to check)."""
        if self._own is not None:
            return self._own.public
        try:
            return PublicKey.parse((self.directory / "signing_key.pub").read_text(), "your key")
        except (OSError, KeyProblem):
            return self.own().public

    def revoked(self) -> set[str]:
        """Ids of the keys revoked here."""
        path = self.directory / "revoked"
        if not path.exists():
            return set()
        return {line.split()[0] for line in path.read_text().splitlines() if line.strip()}

    # -- the keys of encrypted stores ---------------------------------------------

    def store_key(self, key_id: str) -> bytes | None:
        """The key of an encrypted store, if the user has it."""
        path = self.directory / "store-keys" / f"{key_id}.key"
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def add_store_key(self, key: bytes) -> str:
        """Keep a store key (made here, or a colleague's); returns its id."""
        from stashdb.storage.sealing import store_key_id

        key_id = store_key_id(key)
        folder = self.directory / "store-keys"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key_id}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(key.hex() + "\n")
        return key_id

    def export_store_key(self, key_id: str) -> str:
        """A store key as one line, for a colleague's ``stashdb keys trust FILE``.

        Raises:
            KeyProblem: the user does not have it.
        """
        key = self.store_key(key_id)
        if key is None:
            raise KeyProblem(key_id, "that store key is not in your key directory")
        return f"{_STORE_KEY} {key_id} {key.hex()}"

    def trust(self, text: str, where: str) -> PublicKey | str:
        """Trust the public key of one OpenSSH line (a colleague's ``stashdb keys export``),
        or keep the store key of a ``stashdb-store-key`` line (returns its id).

        Raises:
            KeyProblem: it is neither an Ed25519 public key nor a store key.
        """
        if text.startswith(_STORE_KEY):
            parts = text.split()
            try:
                secret = bytes.fromhex(parts[2])
            except (IndexError, ValueError):
                raise KeyProblem(where, "not a whole stashdb-store-key line") from None
            if len(secret) != 32:
                raise KeyProblem(where, "a store key has 32 bytes")
            return self.add_store_key(secret)
        key = PublicKey.parse(text, where)
        folder = self.directory / "trusted"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{key.key_id}.pub").write_text(key.openssh + "\n")
        revoked = self.revoked()
        if key.key_id in revoked:  # trusting a key again lifts its revocation
            self._write_revoked(revoked - {key.key_id})
        return key

    def revoke(self, key_id: str) -> str:
        """Stop trusting ``key_id`` (a prefix of one works); returns the full id.

        Raises:
            KeyProblem: no known key has that id.
        """
        known = {**self.trusted()}
        if self.has_own():
            own = self._own_public()
            known[own.key_id] = own
        matches = [k for k in known if k.startswith(key_id)] if key_id else []
        if len(matches) != 1:
            what = "no key" if not matches else f"{len(matches)} keys"
            raise KeyProblem(key_id or "''", f"{what} here has that id (see `stashdb keys list`)")
        self._write_revoked(self.revoked() | {matches[0]})
        return matches[0]

    def _write_revoked(self, ids: set[str]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "revoked").write_text("".join(f"{k}\n" for k in sorted(ids)))


#: How a shared store key begins.
_STORE_KEY = "stashdb-store-key"


def _default_name() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
