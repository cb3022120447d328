"""Trust: BLAKE3 digests of chunks and objects, signatures, the team's trusted keys.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

Keeps format version 1: readers that do not know the columns read the store as
before. Rows written before this revision have no digest and commits have no
signature: checking them out needs ``trust=True`` or ``stashdb keys sign --all``
(which fills the digests and signs them, ids unchanged).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("chunks", "objects", "entries"):
        # A plain ADD COLUMN: SQLite's batch mode would copy every chunk.
        op.add_column(table, sa.Column("digest", sa.LargeBinary(32), nullable=True))
    op.create_table(
        "signatures",
        sa.Column("commit_id", sa.String(32), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("signed", sa.Float, nullable=False),
    )
    op.create_table(
        "trusted_keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("added", sa.Float, nullable=False),
        sa.Column("revoked", sa.Float),
        sa.Column("signer", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("trusted_keys")
    op.drop_table("signatures")
    for table in ("entries", "objects", "chunks"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("digest")
