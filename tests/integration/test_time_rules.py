"""DESIGN §6 through REST (both backends): the issue's time table, exactly.

A Prague user (the demo tenant's default zone) and a New York user send the same
instant in every spelling; it is stored as UTC and shown in each reader's own zone.
Naive times are read in the sender's zone (and refused around DST changes), dates and
months never shift, and filter literals follow the same rules.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from httpx import Response
from sqlalchemy import select

from tests.conftest import Api

COLLECTIONS = "/api/v1/collections"
Param = str | int
"""A query parameter's value."""
STORED = dt.datetime(2026, 5, 22, 7, 0, tzinfo=dt.UTC)
FOR_PRAGUE = "2026-05-22T09:00:00+02:00"
FOR_NEW_YORK = "2026-05-22T03:00:00-04:00"


async def _users(api: Api) -> tuple[str, str]:
    """Keys of a Prague user (no zone of their own) and a New York user."""
    await api.create_user("petr", roles=["integration"])
    await api.create_user("nina", roles=["integration"], timezone="America/New_York")
    return await api.login("petr"), await api.login("nina")


async def _send(api: Api, key: str, method: str, path: str, body: object = None) -> Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    return await api.client.request(
        method, f"{COLLECTIONS}/{path}", headers=api.auth(key), **kwargs
    )


async def _company(api: Api) -> int:
    response = await _send(api, api.admin_key, "POST", "Company", {"name": "Acme"})
    assert response.status_code == 201, response.text
    company_id: int = response.json()["data"]["id"]
    return company_id


async def _deal(api: Api, key: str, company: int, closed_on: str) -> Response:
    body = {"title": closed_on, "company": company, "status": "open", "closed_on": closed_on}
    return await _send(api, key, "POST", "Deal", body)


async def _stored(api: Api, type_name: str, record_id: int, name: str) -> object:
    async with api.db() as services:
        table = services.schema.records[type_name]
        async with services.engine.connect() as conn:
            return await conn.scalar(select(table.c[name]).where(table.c.id == record_id))


async def test_the_time_table_for_prague_and_new_york_senders(api: Api) -> None:
    prague, new_york = await _users(api)
    company = await _company(api)
    sent = {
        prague: [
            "2026-05-22T09:00:00+02:00",
            "2026-05-22T07:00:00Z",
            "2026-05-22T03:00:00-04:00",
            "2026-05-22 09:00:00",
            "2026-05-22T09:00:00",
        ],
        new_york: [
            "2026-05-22T09:00:00+02:00",
            "2026-05-22T07:00:00Z",
            "2026-05-22T03:00:00-04:00",
            "2026-05-22 03:00:00",
            "2026-05-22T03:00:00",
        ],
    }
    for sender, spellings in sent.items():
        for spelling in spellings:
            created = await _deal(api, sender, company, spelling)
            assert created.status_code == 201, f"{spelling}: {created.text}"
            record = created.json()["data"]
            shown = FOR_PRAGUE if sender == prague else FOR_NEW_YORK
            assert record["closed_on"] == shown, spelling
            stored = await _stored(api, "Deal", record["id"], "closed_on")
            assert stored == STORED, spelling
            assert isinstance(stored, dt.datetime)
            assert stored.utcoffset() == dt.timedelta(0)
            for reader, expected in ((prague, FOR_PRAGUE), (new_york, FOR_NEW_YORK)):
                got = await _send(api, reader, "GET", f"Deal/{record['id']}")
                assert got.json()["data"]["closed_on"] == expected, spelling
            admin = await _send(api, api.admin_key, "GET", f"Deal/{record['id']}")
            assert admin.json()["data"]["closed_on"] == FOR_PRAGUE  # no zone: the tenant's

    listed = await _send(api, new_york, "GET", "Deal?_fields=closed_on")
    assert {r["closed_on"] for r in listed.json()["data"]} == {FOR_NEW_YORK}

    # The same naive wall time means another instant in New York.
    naive = await _deal(api, new_york, company, "2026-05-22 09:00:00")
    assert naive.json()["data"]["closed_on"] == "2026-05-22T09:00:00-04:00"
    stored = await _stored(api, "Deal", naive.json()["data"]["id"], "closed_on")
    assert stored == dt.datetime(2026, 5, 22, 13, 0, tzinfo=dt.UTC)
    got = await _send(api, prague, "GET", f"Deal/{naive.json()['data']['id']}")
    assert got.json()["data"]["closed_on"] == "2026-05-22T15:00:00+02:00"


async def test_dates_and_months_never_shift(api: Api) -> None:
    prague, new_york = await _users(api)
    company = await _company(api)
    for sender in (prague, new_york):
        for spelling in ("2026-05-22", "2026-05-22T23:30:00-10:00", "2026-05-22 00:30:00"):
            created = await _send(
                api, sender, "POST", "Contact", {"full_name": "Ann", "birthday": spelling}
            )
            assert created.status_code == 201, f"{spelling}: {created.text}"
            record = created.json()["data"]
            assert record["birthday"] == "2026-05-22", spelling
            assert await _stored(api, "Contact", record["id"], "birthday") == dt.date(2026, 5, 22)
            for reader in (prague, new_york):
                got = await _send(api, reader, "GET", f"Contact/{record['id']}")
                assert got.json()["data"]["birthday"] == "2026-05-22"
        for spelling in ("2026-05", "2026-05-31", "2026-05-31T23:30:00-10:00"):
            body = {"title": "T", "company": company, "status": "open", "expected_close": spelling}
            created = await _send(api, sender, "POST", "Deal", body)
            assert created.status_code == 201, f"{spelling}: {created.text}"
            assert created.json()["data"]["expected_close"] == "2026-05", spelling
            stored = await _stored(api, "Deal", created.json()["data"]["id"], "expected_close")
            assert stored == dt.date(2026, 5, 1)
    by_date = await _send(api, new_york, "GET", "Contact?_filter=birthday = 2026-05-22&_count=1")
    assert by_date.json()["meta"]["total"] == 6
    by_date = await _send(api, prague, "GET", "Contact?birthday=2026-05-22&_count=1")
    assert by_date.json()["meta"]["total"] == 6


@pytest.mark.parametrize(
    ("zone", "gap", "overlap"),
    [
        (None, "2026-03-29 02:30:00", "2026-10-25 02:30:00"),
        ("America/New_York", "2026-03-08T02:30:00", "2026-11-01T01:30:00"),
    ],
    ids=["prague", "new-york"],
)
async def test_naive_times_in_a_dst_change_are_refused(
    api: Api, zone: str | None, gap: str, overlap: str
) -> None:
    fields = {} if zone is None else {"timezone": zone}
    await api.create_user("tom", roles=["integration"], **fields)
    key = await api.login("tom")
    company = await _company(api)
    for naive in (gap, overlap):
        refused = await _deal(api, key, company, naive)
        assert refused.status_code == 422, f"{naive}: {refused.text}"
        assert {e["field"] for e in refused.json()["errors"]} == {"closed_on"}
        filtered = await _send(api, key, "GET", f"Deal?_filter=closed_on = {naive}")
        assert filtered.status_code == 422, f"{naive}: {filtered.text}"
        searched = await _send(
            api, key, "SEARCH", "Deal", {"filter": {"closed_on": {"gte": naive}}}
        )
        assert searched.status_code == 422, f"{naive}: {searched.text}"
        equal = await api.client.get(
            f"{COLLECTIONS}/Deal", params={"closed_on": naive}, headers=api.auth(key)
        )
        assert equal.status_code == 422, f"{naive}: {equal.text}"
    # With an offset the same wall times are instants, and are taken.
    offset = "+01:00" if zone is None else "-04:00"
    accepted = await _deal(api, key, company, f"{overlap}{offset}")
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["data"]["closed_on"] == f"{overlap.replace(' ', 'T')}{offset}"
    # The other zone's gap is an ordinary time here.
    other_gap = "2026-03-08 02:30:00" if zone is None else "2026-03-29 02:30:00"
    assert (await _deal(api, key, company, other_gap)).status_code == 201


async def test_filter_literals_follow_the_same_rules(api: Api) -> None:
    prague, new_york = await _users(api)
    company = await _company(api)
    created = await _deal(api, prague, company, FOR_PRAGUE)
    deal = created.json()["data"]["id"]
    later = await _deal(api, prague, company, "2026-05-22T15:00:00+02:00")
    later_id = later.json()["data"]["id"]

    async def found(key: str, **params: Param) -> set[int]:
        response = await api.client.get(f"{COLLECTIONS}/Deal", params=params, headers=api.auth(key))
        assert response.status_code == 200, f"{params}: {response.text}"
        return {r["id"] for r in response.json()["data"]}

    async def searched(key: str, condition: dict[str, Any]) -> set[int]:
        response = await _send(api, key, "SEARCH", "Deal", {"filter": {"closed_on": condition}})
        assert response.status_code == 200, f"{condition}: {response.text}"
        return {r["id"] for r in response.json()["data"]}

    naive = "2026-05-22T09:00:00"
    assert await found(prague, _filter=f"closed_on = {naive}") == {deal}
    assert await found(new_york, _filter=f"closed_on = {naive}") == {later_id}  # 13:00 UTC
    assert await found(new_york, _filter="closed_on = 2026-05-22T03:00:00") == {deal}
    assert await found(prague, _filter="closed_on = '2026-05-22 09:00:00'") == {deal}
    assert await found(prague, closed_on=naive) == {deal}
    assert await found(new_york, closed_on=naive) == {later_id}
    assert await searched(prague, {"eq": naive}) == {deal}
    assert await searched(new_york, {"eq": naive}) == {later_id}
    for key in (prague, new_york):
        for instant in ("2026-05-22T07:00:00Z", FOR_PRAGUE, FOR_NEW_YORK):
            assert await found(key, _filter=f"closed_on = {instant}") == {deal}, instant
            assert await found(key, closed_on=instant) == {deal}, instant
            assert await searched(key, {"eq": instant}) == {deal}, instant
        assert await found(key, _filter="closed_on > 2026-05-22T07:00:00Z") == {later_id}
        assert await found(key, _filter="closed_on <= 2026-05-22T07:00:00Z") == {deal}
    # Naive bounds of ranges too.
    assert await found(prague, _filter="closed_on < 2026-05-22T09:00:01") == {deal}
    assert await found(new_york, _filter="closed_on < 2026-05-22T03:00:01") == {deal}
    assert await found(new_york, _filter="closed_on >= 2026-05-22T03:00:01") == {later_id}


async def test_system_times_are_shown_in_the_readers_zone(api: Api) -> None:
    prague, new_york = await _users(api)
    created = await _send(api, prague, "POST", "Company", {"name": "Acme"})
    record_id = created.json()["data"]["id"]
    for key, zone in ((prague, "Europe/Prague"), (new_york, "America/New_York")):
        record = (await _send(api, key, "GET", f"Company/{record_id}")).json()["data"]
        for name in ("created_on", "updated_on"):
            shown = dt.datetime.fromisoformat(record[name])
            assert shown.utcoffset() == shown.astimezone(ZoneInfo(zone)).utcoffset(), name
        assert dt.datetime.fromisoformat(record["created_on"]) == await _stored(
            api, "Company", record_id, "created_on"
        )
