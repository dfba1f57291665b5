"""The catalogue's tables as SQLAlchemy Core sees them. Alembic's migrations (``migrations/versions``) create
them; this module only names them for queries, so a change here needs a migration too.

Search is engine-specific and lives beside the table rather than in it: an SQLite FTS5 table
``captions_fts`` kept in step by triggers, or a PostgreSQL ``search`` tsvector column computed from the row.
Both index the row's ``caption``, ``keywords`` and ``visible_text``: the text a person would search, i.e.
their edit where there is one, the model's text otherwise.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()
# A Python None is SQL NULL (not JSON null), so "no edit" is IS NULL on both engines.
Json = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

captions = Table(
    "captions",
    metadata,
    # SQLite needs INTEGER PRIMARY KEY (the rowid) for FTS5's external content; PostgreSQL gets a bigint.
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    # Which image version: "s3://bucket/key@etag" (uploads, later, "sha256:<hex>"); with params_key, unique.
    Column("identity", Text, nullable=False),
    Column("params_key", String(64), nullable=False),
    Column("s3_uri", Text),
    Column("bucket", Text),
    Column("key", Text),
    Column("etag", Text),
    Column("image_sha256", String(64)),
    Column("params", Json, nullable=False),
    Column("record", Json, nullable=False),
    Column("timings", Json, nullable=False),
    Column("caption", Text, nullable=False),
    Column("keywords", Text, nullable=False),
    Column("visible_text", Text, nullable=False),
    Column("source", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("edited", Json),
    Column("write_back", Json),  # records.WriteBackState: written beside the image, or waiting (0003)
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# The S3 event queue (migration 0002): one row per object version waiting to be captioned, in the same
# database as the captions, so a 202 means the row is committed beside the catalogue it will land in.
# A row lives while there is work: done rows are deleted (the caption row is the record), failed ones stay.
event_queue = Table(
    "event_queue",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("bucket", Text, nullable=False),
    Column("key", Text, nullable=False),
    # "" when the store did not say: NULLs never collide in a unique index, and duplicates must.
    Column("etag", Text, nullable=False),
    Column("request_id", String(128)),  # the delivery's, so its log line and the processing's meet
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # queued, retry, running, failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", DateTime(timezone=True)),
    Column("last_error_code", String(64)),
    Column("last_error_message", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
