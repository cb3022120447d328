"""How a store names and keeps its bytes: in the clear, or sealed under a store key.

A store made with ``encrypt=True`` (docs/security.md, "Encryption at rest")
differs in three ways, all here:

- **Chunk ids are keyed**: BLAKE3 keyed with a key derived from the store
  key, cut to 16 bytes, instead of xxh3. Without the key, equal ids say
  nothing about equal contents across stores, and no one can test a guess
  of a value against the ids. Within the store, dedup works as before.
- **Chunk bytes are sealed**: stored as the inner codec byte, a fresh 96-bit
  nonce, and AES-256-GCM (the `cryptography` package) of the stored bytes
  with the chunk id and the codec byte as associated data; the row's codec is
  `SEALED`. A changed byte fails the tag: the read reports the chunk damaged.
- **Value descriptions and messages are sealed**: the manifest's
  ``type_name``, ``preview``, ``shape``, ``literal`` and ``reason``, commit
  and tag messages, are stored as ``sealed1:`` + base64. Names, sizes and
  times stay readable (history and ``log`` need them; docs/security.md).

Digests (what signatures cover) and commit ids are keyed too, for the same
reason as chunk ids, and a signature covers keyed hashes of the sealed texts
(`blind`), so neither an id nor a signature confirms a guess of a message or
a preview.
`PLAIN` is the sealer of every other store: xxh3 ids, plain BLAKE3 digests,
nothing sealed.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import xxhash

from stashdb.errors import KeyProblem

__all__ = ["PLAIN", "SEALED", "SEALED_COLUMNS", "Plain", "Sealed", "Unsealable", "store_key_id"]

#: The ``chunks.codec`` of a sealed chunk (0 raw and 1 zstd are inside the seal).
SEALED = 2
#: Manifest columns that describe a value, sealed in an encrypted store.
SEALED_COLUMNS = ("type_name", "preview", "shape", "literal", "reason")
_TEXT = "sealed1:"
_NONCE = 12


class Unsealable(Exception):
    """Sealed bytes that this key does not open (changed, or sealed under another key)."""


def store_key_id(key: bytes) -> str:
    """The id of a store key: 16 hex digits that name it without revealing it."""
    return hashlib.sha256(b"stashdb-store-key\0" + key).hexdigest()[:16]


#: BLAKE3's threads are a Rust (rayon) pool, started on first use. A forked
#: child (an auto-snapshot, a session worker) has none of its parent's
#: threads, but the pool's state says it has: a hash there waits forever for
#: them (found by bench/bench_notebook.py). After a fork from a process that
#: started the pool, the child hashes on its own thread.
_pool_started = False
_pool_usable = True


def _after_fork_in_child() -> None:
    global _pool_usable
    if _pool_started:
        _pool_usable = False


os.register_at_fork(after_in_child=_after_fork_in_child)


def blake3_of(data: Any, key: bytes | None = None) -> Any:
    """BLAKE3 over ``data`` (keyed with ``key``), on several threads for 1 MiB or more.

    The one place stashdb starts a BLAKE3 hash of bytes: plain digests, and an
    encrypted store's keyed ids, digests and blinded texts.
    """
    global _pool_started
    import blake3  # only a commit or a checkout pays its import (3 ms)

    view = memoryview(data)
    threads = 1
    if view.nbytes >= 1024 * 1024 and _pool_usable:
        threads, _pool_started = blake3.blake3.AUTO, True
    if key is None:
        return blake3.blake3(view, max_threads=threads)
    return blake3.blake3(view, key=key, max_threads=threads)


class Plain:
    """A store in the clear: xxh3 chunk ids, BLAKE3 digests, nothing sealed."""

    encrypted = False
    key_id: str | None = None

    def chunk_id(self, data: Any) -> bytes:
        """The 16-byte id of a chunk's uncompressed bytes."""
        return xxhash.xxh3_128_digest(data)

    def digest(self, raw: Any) -> bytes:
        """The 32-byte digest of a chunk's uncompressed bytes (what signatures cover)."""
        return bytes(blake3_of(raw).digest())

    def seal(self, chunk_id: bytes, codec: int, data: Any) -> tuple[int, Any]:
        """The codec and bytes to store for a chunk."""
        return codec, data

    def open(self, chunk_id: bytes, data: Any) -> tuple[int, bytes]:
        """The codec and bytes inside a sealed chunk."""
        raise Unsealable("this store is not encrypted, yet the chunk is sealed")

    def seal_text(self, text: str | None) -> str | None:
        """A description as stored."""
        return text

    def commit_id(self, payload: bytes) -> str:
        """A commit's id from its canonical payload (docs/format.md, "Ids")."""
        return xxhash.xxh3_128_hexdigest(payload)

    def blind(self, text: str | None) -> str | None:
        """Text as a signature covers it: itself (sealed stores: a keyed hash of it)."""
        return text

    def open_text(self, text: Any) -> Any:
        """A description as stored, read back."""
        return text


PLAIN = Plain()


class Sealed(Plain):
    """A store sealed under a 32-byte store key (AES-256-GCM, keyed BLAKE3)."""

    encrypted = True

    def __init__(self, key: bytes) -> None:
        import blake3
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(key) != 32:
            raise KeyProblem(f"store key {store_key_id(key)}", f"it has {len(key)} bytes, not 32")
        self.key_id = store_key_id(key)

        def derived(purpose: str) -> bytes:
            return blake3.blake3(key, derive_key_context=f"stashdb 2026-12 {purpose}").digest()

        self._id_key = derived("chunk ids")
        self._blind_key = derived("signed texts")
        self._digest_key = derived("chunk digests")
        self._aead = AESGCM(derived("chunk and text sealing"))

    def chunk_id(self, data: Any) -> bytes:
        """Keyed BLAKE3 of the uncompressed bytes, 16 bytes: equal only within this store."""
        return blake3_of(data, self._id_key).digest(length=16)

    def digest(self, raw: Any) -> bytes:
        """Keyed BLAKE3 of the uncompressed bytes, 32 bytes (what signatures cover)."""
        return blake3_of(raw, self._digest_key).digest()

    def commit_id(self, payload: bytes) -> str:
        """Keyed BLAKE3 of the commit's payload: its message cannot be guessed from its id."""
        return blake3_of(payload, self._id_key).hexdigest(length=16)

    def blind(self, text: str | None) -> str | None:
        """A keyed hash of the text: a signature over it confirms no guess of it."""
        if text is None:
            return None
        return "blind1:" + blake3_of(text.encode(), self._blind_key).hexdigest(length=16)

    def seal(self, chunk_id: bytes, codec: int, data: Any) -> tuple[int, Any]:
        """``SEALED`` and: the codec byte, a fresh nonce, AES-256-GCM of the bytes."""
        # The bytes encrypted in place of a copy; one join: a chunk is copied twice, not four times.
        nonce = os.urandom(_NONCE)
        head = bytes([codec])
        sealed = self._aead.encrypt(nonce, data, chunk_id + head)
        return SEALED, b"".join((head, nonce, sealed))

    def open(self, chunk_id: bytes, data: Any) -> tuple[int, bytes]:
        """The inner codec and bytes of a sealed chunk.

        Raises:
            Unsealable: the seal does not hold.
        """
        from cryptography.exceptions import InvalidTag

        view = memoryview(data)
        if view.nbytes < 1 + _NONCE:
            raise Unsealable("it is too short to be sealed")
        head = bytes(view[:1])
        try:
            inner = self._aead.decrypt(view[1 : 1 + _NONCE], view[1 + _NONCE :], chunk_id + head)
        except (InvalidTag, ValueError):
            raise Unsealable("its seal does not hold (changed, or another key's)") from None
        return head[0], inner

    def seal_text(self, text: str | None) -> str | None:
        """``sealed1:`` and base64 of a nonce and AES-256-GCM of the text."""
        if text is None:
            return None
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, text.encode(), b"text")
        return _TEXT + base64.b64encode(nonce + sealed).decode()

    def open_text(self, text: Any) -> Any:
        """A sealed text opened (a value stored before it was sealed passes as it is).

        Raises:
            Unsealable: the seal does not hold.
        """
        from cryptography.exceptions import InvalidTag

        if not isinstance(text, str) or not text.startswith(_TEXT):
            return text
        try:
            blob = base64.b64decode(text[len(_TEXT):])
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], b"text").decode()
        except (InvalidTag, ValueError):
            raise Unsealable("a sealed description does not open with this key") from None
