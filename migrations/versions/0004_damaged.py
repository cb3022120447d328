"""Remember chunks and objects found damaged, so the next commit of the same bytes rewrites them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Keeps format version 1: readers that do not know the table read the store as
before; writers that do not know it reuse a damaged chunk, as they always did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "damaged",
        sa.Column("id", sa.LargeBinary(16), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("found", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("damaged")
