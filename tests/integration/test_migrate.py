"""`gateway migrate` on SQLite and PostgreSQL: idempotent, additive, refuses destruction."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from resolvers.migrate import DestructiveMigrationRefused, apply_plan, plan_migration
from resolvers.storage import Schema, build_schema, create_engine
from resolvers.tenant import Tenant, parse_tenant
from tests.conftest import Backend

BASE = """
[tenant]
name = "Library"

[types.Book.properties]
title = { kind = "string", required = true }
pages = { kind = "integer" }
"""
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def tenant(extra: str = "", *, base: str = BASE) -> Tenant:
    return parse_tenant(base + extra)


@pytest.fixture
async def engine(backend: Backend) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(backend.url)
    yield engine
    await engine.dispose()


async def migrate(
    engine: AsyncEngine, model: Tenant, *, allow_destructive: bool = False
) -> list[str]:
    plan = await apply_plan(
        engine, build_schema(model), tenant_digest=model.digest, allow_destructive=allow_destructive
    )
    return [str(step) for step in plan.steps]


async def columns(engine: AsyncEngine, table: str) -> dict[str, str]:
    async with engine.connect() as conn:
        found = await conn.run_sync(lambda sync: inspect(sync).get_columns(table))
    return {c["name"]: str(c["type"]) for c in found}


async def add_book(engine: AsyncEngine, schema: Schema, **values: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(schema.records["Book"]).values(created_on=NOW, updated_on=NOW, **values)
        )


async def test_second_run_has_nothing_to_do(engine: AsyncEngine) -> None:
    first = await migrate(engine, tenant())
    assert "+ create table c_book" in first
    assert await migrate(engine, tenant()) == []
    assert (await plan_migration(engine, build_schema(tenant()))).empty


async def test_applied_plans_are_logged(engine: AsyncEngine) -> None:
    model = tenant()
    await migrate(engine, model)
    schema = build_schema(model)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(schema.system.schema_log))).all()
    assert [r.tenant_digest for r in rows] == [model.digest]
    assert "create table c_book" in rows[0].plan


async def test_additive_changes_apply_and_keep_data(engine: AsyncEngine) -> None:
    await migrate(engine, tenant())
    await add_book(engine, build_schema(tenant()), title="Dune", pages=412)
    grown = tenant(
        """
isbn = { kind = "string", unique = true }
tags = { kind = "string", multiple = true }

[types.Author.properties]
name = { kind = "string", indexed = true }
"""
    )
    steps = await migrate(engine, grown)
    assert steps[:2] == ["+ create table c_author", "+ create table c_book__tags"]
    assert "+ add column c_book.isbn (VARCHAR(255))" in steps
    assert "+ create unique index uq_c_book_isbn (on c_book)" in steps
    assert await migrate(engine, grown) == []
    async with engine.connect() as conn:
        book = (await conn.execute(select(build_schema(grown).records["Book"]))).one()
    assert (book.title, book.pages, book.isbn) == ("Dune", 412, None)


async def test_new_index_on_an_existing_property(engine: AsyncEngine) -> None:
    await migrate(engine, tenant())
    indexed = tenant(
        base=BASE.replace(
            'pages = { kind = "integer" }', 'pages = { kind = "integer", indexed = true }'
        )
    )
    assert await migrate(engine, indexed) == ["+ create index ix_c_book_pages (on c_book)"]


async def test_dropping_a_property_is_refused_and_changes_nothing(engine: AsyncEngine) -> None:
    await migrate(engine, tenant())
    await add_book(engine, build_schema(tenant()), title="Dune", pages=412)
    shrunk = tenant(base=BASE.replace('pages = { kind = "integer" }\n', ""))
    with pytest.raises(DestructiveMigrationRefused, match=r"- drop column c_book\.pages"):
        await migrate(engine, shrunk)
    assert "pages" in await columns(engine, "c_book")
    assert await migrate(engine, shrunk, allow_destructive=True) == ["- drop column c_book.pages"]
    assert "pages" not in await columns(engine, "c_book")
    async with engine.connect() as conn:
        assert (
            await conn.execute(select(build_schema(shrunk).records["Book"].c.title))
        ).scalar() == "Dune"


async def test_dropping_a_type_is_refused_unless_allowed(engine: AsyncEngine) -> None:
    two = tenant('\n[types.Author.properties]\nname = { kind = "string" }\n')
    await migrate(engine, two)
    with pytest.raises(DestructiveMigrationRefused, match="drop table c_author"):
        await migrate(engine, tenant())
    assert await migrate(engine, tenant(), allow_destructive=True) == ["- drop table c_author"]


async def test_changing_a_kind_is_destructive(engine: AsyncEngine) -> None:
    await migrate(engine, tenant())
    await add_book(engine, build_schema(tenant()), title="Dune", pages=412)
    retyped = tenant(
        base=BASE.replace('pages = { kind = "integer" }', 'pages = { kind = "string" }')
    )
    with pytest.raises(DestructiveMigrationRefused, match=r"change type c_book\.pages"):
        await migrate(engine, retyped)
    await migrate(engine, retyped, allow_destructive=True)
    async with engine.connect() as conn:
        pages = (await conn.execute(select(build_schema(retyped).records["Book"].c.pages))).scalar()
    assert pages == "412"


async def test_reference_cycles_create_on_both_backends(engine: AsyncEngine) -> None:
    cyclic = tenant(
        """
author = { kind = "reference", to = "Author" }
sequel = { kind = "reference", to = "Book" }

[types.Author.properties]
name = { kind = "string" }
best_book = { kind = "reference", to = "Book" }
"""
    )
    await migrate(engine, cyclic)
    assert await migrate(engine, cyclic) == []
    schema = build_schema(cyclic)
    async with engine.begin() as conn:
        book = await conn.scalar(
            insert(schema.records["Book"])
            .values(created_on=NOW, updated_on=NOW, title="Dune")
            .returning(schema.records["Book"].c.id)
        )
        await conn.execute(
            insert(schema.records["Author"]).values(
                created_on=NOW, updated_on=NOW, name="Herbert", best_book=book
            )
        )


async def test_a_failing_step_rolls_back_the_whole_plan(engine: AsyncEngine) -> None:
    await migrate(engine, tenant())
    schema = build_schema(tenant())
    await add_book(engine, schema, title="Dune", pages=412)
    await add_book(engine, schema, title="Dune", pages=500)
    # A new column, then a unique index that the duplicate titles make impossible.
    failing = tenant(
        'isbn = { kind = "string" }\n',
        base=BASE.replace(
            'kind = "string", required = true', 'kind = "string", required = true, unique = true'
        ),
    )
    with pytest.raises(IntegrityError):
        await migrate(engine, failing)
    assert "isbn" not in await columns(engine, "c_book")
    assert await migrate(engine, tenant()) == []
