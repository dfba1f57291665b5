"""Alembic's environment: migrations run on the connection ``catalogue/migrate.py`` hands over (never on
a URL from alembic.ini), so they use the gateway's own engine, lock and transaction."""

from __future__ import annotations

from alembic import context

from gateway.catalogue.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
