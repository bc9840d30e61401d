"""The generated schema on SQLite and PostgreSQL: real columns, constraints, round trips."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError

from resolvers.services import Services

NOW = dt.datetime(2026, 5, 22, 7, 0, tzinfo=dt.UTC)


def _stamps(**values: Any) -> dict[str, Any]:
    return {"created_on": NOW, "updated_on": NOW, **values}


async def _inspect(services: Services, fn: Any) -> Any:
    async with services.engine.connect() as conn:
        return await conn.run_sync(lambda sync: fn(inspect(sync)))


async def test_every_api_and_internal_type_is_a_real_table(services: Services) -> None:
    tables = set(await _inspect(services, lambda i: i.get_table_names()))
    expected = {
        "c_company",
        "c_contact",
        "c_deal",
        "c_activity",
        "c_document",
        "c_sync_cursor",
        "c_company__tags",
        "c_deal__contacts",
        "gw_users",
        "gw_user_roles",
        "gw_user_groups",
        "gw_api_keys",
        "gw_login_failures",
        "gw_challenges",
        "gw_challenge_secrets",
        "gw_audit",
        "gw_outbox",
        "gw_schema",
    }
    assert expected <= tables


async def test_columns_follow_kinds_and_system_fields(services: Services) -> None:
    columns = {c["name"]: c for c in await _inspect(services, lambda i: i.get_columns("c_company"))}
    assert list(columns)[:5] == ["id", "created_on", "updated_on", "created_by", "updated_by"]
    assert {"name", "registration_no", "industry", "employees", "annual_revenue"} <= set(columns)
    assert "tags" not in columns  # multi-valued: a child table, not a column
    assert "internal_rating" in columns  # api = false still has storage
    assert columns["name"]["type"].length == 200
    assert columns["registration_no"]["type"].length == 32


async def test_unique_and_indexed_properties_get_indexes(services: Services) -> None:
    indexes = {
        ix["name"]: ix for ix in await _inspect(services, lambda i: i.get_indexes("c_company"))
    }
    assert indexes["uq_c_company_registration_no"]["unique"]
    assert not indexes["ix_c_company_name"]["unique"]
    assert "ix_c_company_employees" in indexes
    contact = {ix["name"] for ix in await _inspect(services, lambda i: i.get_indexes("c_contact"))}
    assert {"uq_c_contact_email", "ix_c_contact_company", "ix_c_contact_created_by"} <= contact


async def test_references_are_foreign_keys(services: Services) -> None:
    fks = await _inspect(services, lambda i: i.get_foreign_keys("c_contact"))
    assert [(fk["constrained_columns"], fk["referred_table"]) for fk in fks] == [
        (["company"], "c_company")
    ]
    links = await _inspect(services, lambda i: i.get_foreign_keys("c_deal__contacts"))
    assert {fk["referred_table"] for fk in links} == {"c_deal", "c_contact"}


async def test_values_round_trip_exactly(services: Services) -> None:
    records = services.schema.records
    big = Decimal("12345678901234.56")
    async with services.engine.begin() as conn:
        company = await conn.scalar(
            insert(records["Company"])
            .values(_stamps(name="Acme", annual_revenue=big, employees=2**40))
            .returning(records["Company"].c.id)
        )
        prague = dt.timezone(dt.timedelta(hours=2))
        deal = await conn.scalar(
            insert(records["Deal"])
            .values(
                _stamps(
                    title="Big one",
                    company=company,
                    status="open",
                    amount=Decimal("0.10"),
                    expected_close=dt.date(2026, 7, 19),
                    closed_on=dt.datetime(2026, 5, 22, 9, 0, tzinfo=prague),
                    margin_percent=Decimal("-12.35"),
                )
            )
            .returning(records["Deal"].c.id)
        )
        row = (
            await conn.execute(select(records["Deal"]).where(records["Deal"].c.id == deal))
        ).one()
        revenue = await conn.scalar(select(records["Company"].c.annual_revenue))
    assert revenue == big
    assert row.amount == Decimal("0.10")
    assert row.margin_percent == Decimal("-12.35")
    assert row.expected_close == dt.date(2026, 7, 1)  # a month is stored as its first day
    assert row.closed_on == NOW
    assert row.closed_on.utcoffset() == dt.timedelta(0)


async def test_decimals_compare_and_order_as_numbers(services: Services) -> None:
    deals = services.schema.records["Deal"]
    amounts = [Decimal("9.99"), Decimal("100.00"), Decimal("10.50"), Decimal("-1.25")]
    async with services.engine.begin() as conn:
        company = await _company(conn, services)
        for amount in amounts:
            await conn.execute(
                insert(deals).values(
                    _stamps(title="d", company=company, status="open", amount=amount)
                )
            )
        ordered = (await conn.scalars(select(deals.c.amount).order_by(deals.c.amount))).all()
        above = (
            await conn.scalars(select(deals.c.amount).where(deals.c.amount > Decimal("10")))
        ).all()
    assert ordered == sorted(amounts)
    assert sorted(above) == [Decimal("10.50"), Decimal("100.00")]


async def test_instants_compare_across_offsets(services: Services) -> None:
    deals = services.schema.records["Deal"]
    new_york = dt.timezone(dt.timedelta(hours=-4))
    async with services.engine.begin() as conn:
        company = await _company(conn, services)
        await conn.execute(
            insert(deals).values(_stamps(title="d", company=company, status="won", closed_on=NOW))
        )
        same = await conn.scalar(
            select(func.count()).where(
                deals.c.closed_on == dt.datetime(2026, 5, 22, 3, 0, tzinfo=new_york)
            )
        )
    assert same == 1


async def test_naive_datetimes_never_reach_storage(services: Services) -> None:
    deals = services.schema.records["Deal"]
    async with services.engine.begin() as conn:
        company = await _company(conn, services)
        naive = dt.datetime(2026, 1, 1)  # noqa: DTZ001 - the point of the test
        with pytest.raises(StatementError, match="naive datetime"):
            await conn.execute(
                insert(deals).values(
                    _stamps(title="d", company=company, status="won", closed_on=naive)
                )
            )


async def test_unique_property_is_enforced(services: Services) -> None:
    contacts = services.schema.records["Contact"]
    async with services.engine.begin() as conn:
        await conn.execute(insert(contacts).values(_stamps(full_name="A", email="a@example.com")))
    with pytest.raises(IntegrityError):
        async with services.engine.begin() as conn:
            await conn.execute(
                insert(contacts).values(_stamps(full_name="B", email="a@example.com"))
            )


async def test_child_rows_follow_their_record(services: Services) -> None:
    schema = services.schema
    tags = schema.children["Company", "tags"]
    links = schema.children["Deal", "contacts"]
    async with services.engine.begin() as conn:
        company = await _company(conn, services)
        await conn.execute(
            insert(tags),
            [{"record_id": company, "position": i, "value": t} for i, t in enumerate("ab")],
        )
        contact = await conn.scalar(
            insert(schema.records["Contact"])
            .values(_stamps(full_name="C", company=company))
            .returning(schema.records["Contact"].c.id)
        )
        deal = await conn.scalar(
            insert(schema.records["Deal"])
            .values(_stamps(title="d", company=company, status="open"))
            .returning(schema.records["Deal"].c.id)
        )
        await conn.execute(insert(links).values(record_id=deal, position=0, value=contact))
        await conn.execute(
            delete(schema.records["Contact"]).where(schema.records["Contact"].c.id == contact)
        )
        assert await conn.scalar(select(func.count()).select_from(links)) == 0
        await conn.execute(delete(schema.records["Deal"]))
        await conn.execute(delete(schema.records["Company"]))
        assert await conn.scalar(select(func.count()).select_from(tags)) == 0


async def test_deleting_a_referenced_record_clears_the_reference(services: Services) -> None:
    contacts = services.schema.records["Contact"]
    async with services.engine.begin() as conn:
        company = await _company(conn, services)
        await conn.execute(insert(contacts).values(_stamps(full_name="C", company=company)))
        await conn.execute(delete(services.schema.records["Company"]))
        assert await conn.scalar(select(contacts.c.company)) is None


async def _company(conn: Any, services: Services) -> int:
    companies = services.schema.records["Company"]
    company_id: int = await conn.scalar(
        insert(companies).values(_stamps(name="Acme")).returning(companies.c.id)
    )
    return company_id
