"""SQLite writes one transaction at a time: a process's writers queue for the writer
engine's single connection (`resolvers.storage.writer`) instead of each holding a pooled
connection while SQLite's busy handler makes it sleep and retry."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from resolvers.storage import create_engine, writer
from tests.conftest import Api, Backend


@pytest.fixture
def sqlite_only(backend: Backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("PostgreSQL's writers do not queue for one lock")


@pytest.mark.usefixtures("sqlite_only")
async def test_queued_writers_leave_the_pool_to_readers(api: Api, live_url: str) -> None:
    """While another process holds SQLite's write lock, 20 creates wait; a read is still
    served, then every create is made once the lock is released. When each waiting writer
    held one of the shared pool's 15 connections, the read waited for one until the
    writers gave up at SQLite's busy timeout, and the creates failed with 503."""
    auth = api.auth(api.admin_key)
    path = "/api/v1/collections/Company"
    async with (
        httpx.AsyncClient(base_url=live_url, headers=auth, timeout=30) as client,
        api.db() as other,
    ):
        assert (await client.get(path)).status_code == 200  # the key's first use writes
        async with other.writer.begin() as held:  # another process, writing
            await held.exec_driver_sql("SELECT 1")
            creates = [
                asyncio.create_task(client.post(path, json={"name": f"C{i}"})) for i in range(20)
            ]
            await asyncio.sleep(0.5)  # every create is waiting by now
            done = [task.result() for task in creates if task.done()]
            assert not done, [(r.status_code, r.text) for r in done]
            read = await client.get(f"{path}?_noCache=1")
            assert read.status_code == 200, read.text
            assert read.json()["data"] == []
        made = await asyncio.gather(*creates)
        assert [response.status_code for response in made] == [201] * 20
        listed = await client.get(f"{path}?_noCache=1&_limit=100")
    assert sorted(c["name"] for c in listed.json()["data"]) == sorted(f"C{i}" for i in range(20))


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"])
async def test_an_in_memory_database_is_written_where_it_is_read(url: str) -> None:
    """An in-memory database exists once per engine: its writer is the same engine."""
    engine = create_engine(url)
    writes = writer(engine)
    try:
        async with writes.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT x FROM t")).scalar_one() == 1
    finally:
        await engine.dispose()
