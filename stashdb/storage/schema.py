"""The tables of a stashdb store (format version 1), as SQLAlchemy Core.

`docs/format.md` is the specification; this module and the Alembic revisions in
`migrations/` must agree with it (tests/test_migrations.py checks for drift).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

#: Key/value settings of the store: ``format_version``, ``HEAD`` (current branch),
#: ``store_id``, ``created``.
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

#: Immutable runs of bytes, addressed by the xxh3-128 of their uncompressed bytes.
chunks = Table(
    "chunks",
    metadata,
    Column("id", LargeBinary(16), primary_key=True),
    Column("raw_size", Integer, nullable=False),
    Column("codec", SmallInteger, nullable=False),  # 0 = raw, 1 = zstd
    Column("data", LargeBinary, nullable=False),
    # Revision 0005: BLAKE3 of the uncompressed bytes, computed once when first
    # written (NULL: written before 0005; filled when a commit meets it again).
    Column("digest", LargeBinary(32)),
)

#: One stored value (or group of values): a pickle stream plus out-of-band buffers.
objects = Table(
    "objects",
    metadata,
    Column("id", LargeBinary(16), primary_key=True),
    Column("pickler", String(16), nullable=False),  # "pickle" or "dill": who wrote it
    Column("parts", Integer, nullable=False),  # 1 stream + N buffers
    Column("raw_size", BigInteger, nullable=False),
    Column("stored_size", BigInteger, nullable=False),
    # Revision 0003: when it was written (epoch seconds; NULL: before 0003, old).
    # gc spares recent objects: they may belong to a commit still in flight.
    Column("created", Float),
    # Revision 0005: BLAKE3 over the pickler and the chunk layout with each
    # chunk's digest (docs/format.md, "Digests"); NULL: written before 0005.
    Column("digest", LargeBinary(32)),
)

#: The chunks of each part of an object, in order.
object_chunks = Table(
    "object_chunks",
    metadata,
    Column("object_id", LargeBinary(16), primary_key=True),
    Column("part", Integer, primary_key=True),  # 0 = pickle stream, i = buffer i-1
    Column("seq", Integer, primary_key=True),
    Column("chunk_id", LargeBinary(16), nullable=False),
    Column("raw_size", Integer, nullable=False),
    Index("ix_object_chunks_chunk_id", "chunk_id"),
)

commits = Table(
    "commits",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("time", Float, nullable=False),  # seconds since the epoch, UTC
    Column("message", Text, nullable=False),
    Column("branch", String(255), nullable=False),
    Column("workspace", String(255), nullable=False),  # module name of the namespace
    Column("user", String(255), nullable=False),
    Column("host", String(255), nullable=False),
    Column("python", String(64), nullable=False),
    Column("dill", String(64), nullable=False),
    Column("packages", Text, nullable=False),  # JSON object: package -> version
    Column("stored", Integer, nullable=False),
    Column("reused", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("chunks_written", Integer, nullable=False),
    Column("bytes_written", BigInteger, nullable=False),
)

commit_parents = Table(
    "commit_parents",
    metadata,
    Column("commit_id", String(32), ForeignKey("commits.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("parent_id", String(32), nullable=False),
    Index("ix_commit_parents_parent_id", "parent_id"),
)

#: The manifest of each commit: one row per name, complete (never a delta).
entries = Table(
    "entries",
    metadata,
    Column("commit_id", String(32), ForeignKey("commits.id"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),  # "value", "module" or "skipped"
    Column("status", String(16), nullable=False),  # "stored", "reused" or "skipped"
    Column("object_id", LargeBinary(16)),  # NULL for modules and skipped names
    Column("slot", Integer),  # index in a group's tuple; NULL when the object is this value
    # The object id this value has stored on its own (hex): tells whether a group
    # member changed when only another member of its group did. NULL: use object_id.
    Column("value_hash", String(32)),
    Column("type_name", Text, nullable=False),
    Column("size", BigInteger, nullable=False),  # pickled bytes of its object
    Column("stored_size", BigInteger, nullable=False),  # bytes its object takes in the store
    Column("seconds", Float, nullable=False),  # time to pickle its object
    Column("preview", Text, nullable=False),
    Column("shape", Text),
    Column("literal", Text),  # exact repr of a small built-in value, for diff
    Column("reason", Text),  # why it was skipped
    Column("module", Text),  # module entries: the module to import
    Column("version", Text),  # module entries: its version when committed
    Column("digest", LargeBinary(32)),  # revision 0005: its object's digest, as signed
    Index("ix_entries_object_id", "object_id"),
    Index("ix_entries_name", "name", "commit_id"),  # revision 0002: history, diff
)

#: Branches (move on commit) and tags (fixed), in one namespace.
refs = Table(
    "refs",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(8), nullable=False),  # "branch" or "tag"
    Column("commit_id", String(32), nullable=False),
    Column("message", Text),
    Column("time", Float, nullable=False),
)

#: Revision 0005: a commit's signature (docs/security.md). One per commit: the
#: key that signed it and an Ed25519 signature over its contents with every
#: digest it reaches. Commits without a row are unsigned.
signatures = Table(
    "signatures",
    metadata,
    Column("commit_id", String(32), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("signed", Float, nullable=False),
)

#: Revision 0005: the team's trusted public keys, each row signed by the key
#: that added it (``signer``); a reader trusts a row only if it trusts its signer.
#: ``revoked`` (epoch seconds) marks a key no longer trusted.
trusted_keys = Table(
    "trusted_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("public_key", Text, nullable=False),  # OpenSSH form: ssh-ed25519 AAAA… name
    Column("name", Text, nullable=False),
    Column("added", Float, nullable=False),
    Column("revoked", Float),
    Column("signer", String(64), nullable=False),
    Column("signature", LargeBinary, nullable=False),
)

#: Revision 0004: chunks and objects found damaged (by a read or `verify`). A
#: commit that produces such a chunk writes it again, and such an object anew;
#: then the row goes. ``kind`` is "chunk" (its bytes do not match its id) or
#: "object" (one of its chunks is missing or damaged).
damaged = Table(
    "damaged",
    metadata,
    Column("id", LargeBinary(16), primary_key=True),
    Column("kind", String(8), nullable=False),
    Column("found", Float, nullable=False),
)
