"""The baselines of ``bench/run.py``; benchmark code, not part of the product.

- ``app:bare``: a bare Litestar JSON route, ``GET /hello`` -> ``{"hello": "world"}``.
- ``app:create_core_app`` (a factory): the benchmark's list and get written by hand with
  Litestar and SQLAlchemy Core on the gateway's own ``Item`` table, with no gateway
  machinery: no API key, no cache, no query grammar, no tenant model, no projection.
  ``GET /items`` runs the SQL the gateway runs for the benchmark role's list (its row
  scope ``state != 'archived'`` plus ``rank >= 5000 and state = 'open'``, newest
  ``seen_at`` first, 50 rows, the role's visible columns) and ``GET /items/{id}`` the
  get; both answer the gateway's JSON shape (``{"data": ..., "meta": ...}``). Both
  statements are built once, at import, as a careful hand-written endpoint would.
  The database is ``BENCH_CORE_DATABASE_URL``; on PostgreSQL the pool is the
  gateway's default (10 connections, no overflow, 5 s timeout).

Serve from this directory, as ``bench/run.py`` does, with the gateway's granian command.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    bindparam,
    select,
)
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["bare", "create_core_app"]

LIMIT = 50

_metadata = MetaData()
items = Table(  # the columns of bench/collections/tenant.toml's Item the role may read
    "c_item",
    _metadata,
    Column("id", BigInteger, primary_key=True),
    Column("created_on", DateTime(timezone=True)),
    Column("updated_on", DateTime(timezone=True)),
    Column("created_by", BigInteger),
    Column("updated_by", BigInteger),
    Column("rank", BigInteger),
    Column("name", String(200)),
    Column("seen_at", DateTime(timezone=True)),
    Column("state", String(8)),
    Column("group", BigInteger),
    Column("code", String(40)),
)
_in_scope = items.c.state != "archived"
_list = (
    select(items)
    .where(_in_scope, items.c.rank >= 5000, items.c.state == "open")
    .order_by(items.c.seen_at.desc(), items.c.id)
    .limit(LIMIT)
)
_get = select(items).where(items.c.id == bindparam("item_id"), _in_scope)


@get("/hello", sync_to_thread=False)
def hello() -> dict[str, str]:
    return {"hello": "world"}


bare = Litestar(route_handlers=[hello], debug=False)


def _record(row: RowMapping) -> dict[str, Any]:
    # SQLite keeps UTC instants naive; answer them with their offset, as the gateway does.
    return {
        k: v.replace(tzinfo=dt.UTC) if isinstance(v, dt.datetime) and v.tzinfo is None else v
        for k, v in row.items()
    }


@get("/items")
async def list_items(state: State) -> dict[str, Any]:
    engine: AsyncEngine = state.engine
    async with engine.connect() as conn:
        rows = (await conn.execute(_list)).mappings().all()
    return {"data": [_record(r) for r in rows], "meta": {"limit": LIMIT, "offset": 0}}


@get("/items/{item_id:int}")
async def get_item(state: State, item_id: int) -> dict[str, Any]:
    engine: AsyncEngine = state.engine
    async with engine.connect() as conn:
        row = (await conn.execute(_get, {"item_id": item_id})).mappings().one_or_none()
    if row is None:
        raise NotFoundException(f"no Item {item_id}")
    return {"data": _record(row)}


@get("/readyz", sync_to_thread=False)
def ready() -> dict[str, str]:
    return {"status": "ok"}


def create_core_app() -> Litestar:
    """The hand-written app, on ``BENCH_CORE_DATABASE_URL`` (a factory for granian)."""
    url = make_url(os.environ["BENCH_CORE_DATABASE_URL"])

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if url.get_backend_name() == "sqlite":
            engine = create_async_engine(url)
        else:
            engine = create_async_engine(url, pool_size=10, max_overflow=0, pool_timeout=5.0)
        app.state.engine = engine
        try:
            yield
        finally:
            await engine.dispose()

    return Litestar(route_handlers=[list_items, get_item, ready], lifespan=[lifespan], debug=False)
