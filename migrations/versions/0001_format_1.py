"""Format version 1: chunks, objects, commits, entries, refs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "chunks",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("raw_size", sa.Integer, nullable=False),
        sa.Column("codec", sa.SmallInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "objects",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("pickler", sa.String(16), nullable=False),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("raw_size", sa.BigInteger, nullable=False),
        sa.Column("stored_size", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "object_chunks",
        sa.Column("object_id", sa.LargeBinary(16), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("chunk_id", sa.LargeBinary(16), nullable=False),
        sa.Column("raw_size", sa.Integer, nullable=False),
    )
    op.create_index("ix_object_chunks_chunk_id", "object_chunks", ["chunk_id"])
    op.create_table(
        "commits",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("workspace", sa.String(255), nullable=False),
        sa.Column("user", sa.String(255), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("python", sa.String(64), nullable=False),
        sa.Column("dill", sa.String(64), nullable=False),
        sa.Column("packages", sa.Text, nullable=False),
        sa.Column("stored", sa.Integer, nullable=False),
        sa.Column("reused", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("chunks_written", sa.Integer, nullable=False),
        sa.Column("bytes_written", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "commit_parents",
        sa.Column("commit_id", sa.String(32), sa.ForeignKey("commits.id"), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("parent_id", sa.String(32), nullable=False),
    )
    op.create_index("ix_commit_parents_parent_id", "commit_parents", ["parent_id"])
    op.create_table(
        "entries",
        sa.Column("commit_id", sa.String(32), sa.ForeignKey("commits.id"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("object_id", sa.LargeBinary(16)),
        sa.Column("slot", sa.Integer),
        sa.Column("value_hash", sa.String(32)),
        sa.Column("type_name", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("stored_size", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("preview", sa.Text, nullable=False),
        sa.Column("shape", sa.Text),
        sa.Column("literal", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("module", sa.Text),
        sa.Column("version", sa.Text),
    )
    op.create_index("ix_entries_object_id", "entries", ["object_id"])
    op.create_table(
        "refs",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("commit_id", sa.String(32), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("time", sa.Float, nullable=False),
    )
    op.bulk_insert(meta, [{"key": "format_version", "value": "1"}])


def downgrade() -> None:
    for table in ("refs", "entries", "commit_parents", "commits", "object_chunks", "objects",
                  "chunks", "meta"):
        op.drop_table(table)
