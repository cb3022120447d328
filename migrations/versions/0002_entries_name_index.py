"""Index entries by name: `history` and `diff` look one name up across many commits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22

Keeps format version 1: older stashdb reads and writes a store with this index.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_entries_name", "entries", ["name", "commit_id"])


def downgrade() -> None:
    op.drop_index("ix_entries_name", table_name="entries")
