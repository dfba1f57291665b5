"""The captions table, its indexes and its full-text search (FTS5 on SQLite, tsvector on PostgreSQL).

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Words match as words in every language: no stemmer (an English one would mangle German), diacritics
# folded on SQLite; PostgreSQL's "simple" configuration only lower-cases.
SQLITE_FTS = [
    """CREATE VIRTUAL TABLE captions_fts USING fts5(
        caption, keywords, visible_text,
        content='captions', content_rowid='id', tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER captions_fts_insert AFTER INSERT ON captions BEGIN
        INSERT INTO captions_fts(rowid, caption, keywords, visible_text)
        VALUES (new.id, new.caption, new.keywords, new.visible_text);
    END""",
    """CREATE TRIGGER captions_fts_delete AFTER DELETE ON captions BEGIN
        INSERT INTO captions_fts(captions_fts, rowid, caption, keywords, visible_text)
        VALUES ('delete', old.id, old.caption, old.keywords, old.visible_text);
    END""",
    """CREATE TRIGGER captions_fts_update AFTER UPDATE OF caption, keywords, visible_text ON captions BEGIN
        INSERT INTO captions_fts(captions_fts, rowid, caption, keywords, visible_text)
        VALUES ('delete', old.id, old.caption, old.keywords, old.visible_text);
        INSERT INTO captions_fts(rowid, caption, keywords, visible_text)
        VALUES (new.id, new.caption, new.keywords, new.visible_text);
    END""",
]
POSTGRES_SEARCH = (
    "setweight(to_tsvector('simple'::regconfig, caption), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, keywords), 'B') || "
    "setweight(to_tsvector('simple'::regconfig, visible_text), 'C')"
)


def upgrade() -> None:
    op.create_table(
        "captions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("params_key", sa.String(64), nullable=False),
        sa.Column("s3_uri", sa.Text()),
        sa.Column("bucket", sa.Text()),
        sa.Column("key", sa.Text()),
        sa.Column("etag", sa.Text()),
        sa.Column("image_sha256", sa.String(64)),
        sa.Column("params", JSON, nullable=False),
        sa.Column("record", JSON, nullable=False),
        sa.Column("timings", JSON, nullable=False),
        sa.Column("caption", sa.Text(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("visible_text", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("edited", JSON),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("identity", "params_key", name="uq_captions_identity_params"),
    )
    op.create_index("ix_captions_created", "captions", ["created_at", "id"])
    op.create_index("ix_captions_status_created", "captions", ["status", "created_at", "id"])
    op.create_index("ix_captions_location", "captions", ["bucket", "key"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in SQLITE_FTS:
            op.execute(statement)
    else:
        op.add_column(
            "captions",
            sa.Column("search", postgresql.TSVECTOR(), sa.Computed(POSTGRES_SEARCH, persisted=True)),
        )
        op.create_index("ix_captions_search", "captions", ["search"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE captions_fts")
    op.drop_table("captions")
