"""The PostgreSQL harness (tests/support/postgres.py) proves itself: SQLAlchemy async over asyncpg, a stop
that clients notice, a start that finds the data again."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.support.postgres import PostgresError, PostgresServer, postgres_bin_dir


async def test_sqlalchemy_asyncpg_reaches_the_server(postgres: PostgresServer) -> None:
    engine = create_async_engine(postgres.url)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
            user = (await connection.execute(text("SELECT current_user"))).scalar_one()
    finally:
        await engine.dispose()
    assert user == "florence"
    assert postgres.dsn == f"postgresql://florence@127.0.0.1:{postgres.port}/florence"


async def test_a_stopped_server_is_noticed_and_a_started_one_has_the_data(postgres: PostgresServer) -> None:
    engine = create_async_engine(postgres.create_database("restart_check"))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE survivors (name text)"))
            await connection.execute(text("INSERT INTO survivors VALUES ('kept')"))
        await _stopped_server_fails(postgres, engine)
        async with engine.connect() as connection:
            names = (await connection.execute(text("SELECT name FROM survivors"))).scalars().all()
    finally:
        await engine.dispose()
    assert names == ["kept"]


async def _stopped_server_fails(postgres: PostgresServer, engine: AsyncEngine) -> None:
    """Stop, see both failures a client meets, start again (also when an assertion fails)."""
    postgres.stop()
    try:
        # The pooled connection was cut by the server: SQLAlchemy wraps that and drops the connection.
        with pytest.raises(DBAPIError, match="terminating connection") as cut:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert cut.value.connection_invalidated
        # A new connection is refused; asyncpg's OSError reaches the caller unwrapped.
        with pytest.raises(ConnectionRefusedError):
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        postgres.start()


def test_missing_binaries_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PostgresError, match="apt-get install postgresql"):
        postgres_bin_dir(tmp_path)
