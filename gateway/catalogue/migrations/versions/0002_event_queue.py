"""The S3 event queue: object versions waiting for a caption, claimed under a lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_queue",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("bucket", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(128)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_error_code", sa.String(64)),
        sa.Column("last_error_message", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        # A repeated delivery of one object version collapses onto its row (stores deliver at least once).
        sa.UniqueConstraint("bucket", "key", "etag", name="uq_event_queue_object"),
    )
    # What a claim scans: rows due by state and time; leases that ran out are found by their expiry.
    op.create_index("ix_event_queue_due", "event_queue", ["state", "next_attempt_at", "id"])
    op.create_index("ix_event_queue_lease", "event_queue", ["state", "lease_expires_at"])


def downgrade() -> None:
    op.drop_table("event_queue")
