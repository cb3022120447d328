"""Record when each object was written, so gc can spare the objects of commits in flight.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Keeps format version 1. Objects written before this revision have no time and
count as old.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("objects", sa.Column("created", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("created")
