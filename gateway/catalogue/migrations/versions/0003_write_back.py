"""Review: what was written back beside the image for an entry (or waits for approval), and when.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Nullable, no default: existing rows have no write-back on record, and neither engine rewrites them.
    op.add_column("captions", sa.Column("write_back", JSON))


def downgrade() -> None:
    # SQLite drops a column in place since 3.35 (a batch copy would lose the FTS triggers).
    op.drop_column("captions", "write_back")
