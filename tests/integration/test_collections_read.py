"""Reading `/api/v1/collections/{T}` on the demo tenant (both backends).

Filters (every operator, two-valued `not`, paths through single and multi-valued
references, multi-valued scalars), order, paging, field selection, counts, plain
equality parameters, get by id and by a unique property, SEARCH, keyset cursors under
concurrent inserts, and types or properties with `api = false`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

import pytest
from httpx import Response
from sqlalchemy import insert

from tests.conftest import Api

COLLECTIONS = "/api/v1/collections"
Param = str | int
"""A query parameter's value."""


# --- helpers ------------------------------------------------------------------------


def _errors(response: Response) -> set[str]:
    body: dict[str, Any] = response.json()
    return {e["field"] for e in body.get("errors", [])}


async def _create(api: Api, type_name: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(
        f"{COLLECTIONS}/{type_name}", json=body, headers=api.auth(api.admin_key)
    )
    assert response.status_code == 201, response.text
    record: dict[str, Any] = response.json()["data"]
    return record


async def _list(api: Api, type_name: str, **params: Param) -> Response:
    return await api.client.get(
        f"{COLLECTIONS}/{type_name}", params=params, headers=api.auth(api.admin_key)
    )


async def _titles(api: Api, type_name: str, label: str, **params: Param) -> list[str]:
    response = await _list(api, type_name, **params)
    assert response.status_code == 200, f"{params}: {response.text}"
    return [r[label] for r in response.json()["data"]]


async def _seed(api: Api) -> dict[str, int]:
    """Five companies, three contacts, three deals; returns ids by name."""
    ids: dict[str, int] = {}
    companies: list[dict[str, Any]] = [
        {
            "name": "Alpha",
            "registration_no": "R1",
            "industry": "software",
            "employees": 10,
            "annual_revenue": "1000.00",
            "tags": ["b2b", "cloud"],
        },
        {
            "name": "Beta",
            "registration_no": "R2",
            "industry": "manufacturing",
            "employees": 50,
            "annual_revenue": "250000.50",
            "tags": ["b2b"],
        },
        {"name": "Gamma", "industry": "retail", "tags": []},
        {
            "name": "Delta",
            "registration_no": "R4",
            "industry": "software",
            "employees": 10,
            "annual_revenue": "99.99",
            "tags": ["Cloud"],
        },
        {"name": "Epsilon", "employees": 200, "tags": ["retail"]},
    ]
    for body in companies:
        ids[body["name"]] = (await _create(api, "Company", body))["id"]
    contacts: list[dict[str, Any]] = [
        {
            "full_name": "Ann",
            "email": "ann@example.com",
            "company": ids["Alpha"],
            "newsletter": True,
        },
        {
            "full_name": "Bob",
            "email": "bob@other.org",
            "company": ids["Beta"],
            "newsletter": False,
        },
        {"full_name": "Cid"},
    ]
    for body in contacts:
        ids[body["full_name"]] = (await _create(api, "Contact", body))["id"]
    deals: list[dict[str, Any]] = [
        {
            "title": "One",
            "company": ids["Alpha"],
            "contacts": [ids["Ann"], ids["Bob"]],
            "status": "open",
            "amount": "100.00",
        },
        {
            "title": "Two",
            "company": ids["Beta"],
            "contacts": [ids["Bob"]],
            "status": "won",
            "amount": "5000.00",
        },
        {"title": "Three", "company": ids["Alpha"], "status": "lost"},
    ]
    for body in deals:
        ids[body["title"]] = (await _create(api, "Deal", body))["id"]
    return ids


# --- filters ------------------------------------------------------------------------

_COMPANIES = {"Alpha", "Beta", "Gamma", "Delta", "Epsilon"}
_COMPANY_FILTERS: list[tuple[str, set[str]]] = [
    ("employees = 10", {"Alpha", "Delta"}),
    ("employees != 10", {"Beta", "Gamma", "Epsilon"}),
    ("employees < 50", {"Alpha", "Delta"}),
    ("employees <= 50", {"Alpha", "Beta", "Delta"}),
    ("employees > 10", {"Beta", "Epsilon"}),
    ("employees >= 50", {"Beta", "Epsilon"}),
    ("name ~ 'ELT'", {"Delta"}),
    ("name ^= 'al'", {"Alpha"}),
    ("name ~ '_'", set()),
    ("name ~ '%'", set()),
    ("registration_no ^= 'R'", {"Alpha", "Beta", "Delta"}),
    ("industry = 'software'", {"Alpha", "Delta"}),
    ("industry != 'software'", {"Beta", "Gamma", "Epsilon"}),
    ("industry in ('software', 'retail')", {"Alpha", "Gamma", "Delta"}),
    ("industry is null", {"Epsilon"}),
    ("industry is not null", {"Alpha", "Beta", "Gamma", "Delta"}),
    ("not employees = 10", {"Beta", "Gamma", "Epsilon"}),
    ("not (employees >= 50)", {"Alpha", "Gamma", "Delta"}),
    ("not industry in ('software')", {"Beta", "Gamma", "Epsilon"}),
    ("not industry is null", {"Alpha", "Beta", "Gamma", "Delta"}),
    ("industry = 'software' or employees > 100 and name ^= 'E'", {"Alpha", "Delta", "Epsilon"}),
    ("(industry = 'software' or employees > 100) and name ^= 'd'", {"Delta"}),
    ("annual_revenue >= 1000", {"Alpha", "Beta"}),
    ("annual_revenue = 99.99", {"Delta"}),
    ("annual_revenue < '1000.00'", set()),  # a quoted number is text: refused below
    ("tags = 'b2b'", {"Alpha", "Beta"}),
    ("tags != 'b2b'", {"Gamma", "Delta", "Epsilon"}),
    ("tags ~ 'cloud'", {"Alpha", "Delta"}),
    ("tags ^= 'ret'", {"Epsilon"}),
    ("tags in ('retail', 'cloud')", {"Alpha", "Epsilon"}),
    ("tags is null", {"Gamma"}),
    ("tags is not null", {"Alpha", "Beta", "Delta", "Epsilon"}),
    ("not tags = 'b2b'", {"Gamma", "Delta", "Epsilon"}),
    ("created_on <= $now", {"Alpha", "Beta", "Gamma", "Delta", "Epsilon"}),
    ("created_on > $now", set()),
    ("created_by = $me", {"Alpha", "Beta", "Gamma", "Delta", "Epsilon"}),
]

_DEAL_FILTERS: list[tuple[str, set[str]]] = [
    ("company.name = 'Alpha'", {"One", "Three"}),
    ("company.employees > 20", {"Two"}),
    ("company.tags = 'cloud'", {"One", "Three"}),
    ("not company.name = 'Alpha'", {"Two"}),
    ("contacts.full_name = 'Bob'", {"One", "Two"}),
    ("contacts.full_name = 'Ann'", {"One"}),
    ("contacts.full_name != 'Ann'", {"Two", "Three"}),  # no contact is named Ann
    ("company.name != 'Alpha'", {"Two"}),
    ("contacts.company.name != 'Beta'", {"Three"}),
    ("contacts.company is null", {"Three"}),
    ("contacts.company is not null", {"One", "Two"}),
    ("company.industry is null", set()),
    ("company.registration_no is not null", {"One", "Two", "Three"}),
    ("contacts.company.name = 'Beta'", {"One", "Two"}),
    ("contacts.email ~ 'EXAMPLE'", {"One"}),
    ("contacts is null", {"Three"}),
    ("contacts is not null", {"One", "Two"}),
    ("not contacts.full_name = 'Bob'", {"Three"}),
    ("status in ('open', 'won') and amount >= 1000", {"Two"}),
    ("amount is null", {"Three"}),
]


async def test_every_operator_and_logic_on_scalars_and_multi_valued_properties(api: Api) -> None:
    await _seed(api)
    for text, expected in _COMPANY_FILTERS:
        response = await _list(api, "Company", _filter=text)
        if text.startswith("annual_revenue < '"):
            assert response.status_code == 422, response.text
            continue
        assert response.status_code == 200, f"{text}: {response.text}"
        assert {r["name"] for r in response.json()["data"]} == expected, text
        # Two-valued logic: `not` always selects exactly the rest.
        rest = await _titles(api, "Company", "name", _filter=f"not ({text})")
        assert set(rest) == _COMPANIES - expected, f"not ({text})"


async def test_paths_through_single_and_multi_valued_references(api: Api) -> None:
    ids = await _seed(api)
    cases = [
        *_DEAL_FILTERS,
        (f"company = {ids['Alpha']}", {"One", "Three"}),
        (f"contacts = {ids['Ann']}", {"One"}),
        (f"contacts in ({ids['Ann']}, {ids['Bob']})", {"One", "Two"}),
    ]
    everything = {"One", "Two", "Three"}
    for text, expected in cases:
        assert set(await _titles(api, "Deal", "title", _filter=text)) == expected, text
        negated = set(await _titles(api, "Deal", "title", _filter=f"not ({text})"))
        assert negated == everything - expected, f"not ({text})"


async def test_bad_filters_are_422_with_a_position(api: Api) -> None:
    await _seed(api)
    bad = [
        "employees = 'ten'",
        "employees = 1.5",
        "nosuch = 1",
        "name >",
        "name = 'a' and",
        "industry = 'aerospace'",
        "name < true",
        "employees ~ 'x'",
        "tags.name = 'x'",
        "company.nosuch = 1",
        "created_by = 'me'",
        "name = $me",
        "created_by.login = 'root'",
        "updated_by.id = 1",
        "id = 99999999999999999999",
        "created_by = 9223372036854775808",
        "(" * 12 + "employees = 1" + ")" * 12,
    ]
    for text in bad:
        response = await _list(api, "Company", _filter=text)
        assert response.status_code == 422, f"{text}: {response.text}"
        fields = _errors(response)
        assert fields, text
        assert all(f.startswith("_filter") for f in fields), (text, fields)
    too_long = await _list(api, "Company", _filter="name = '" + "x" * 4001 + "'")
    assert too_long.status_code in {400, 422}
    syntax = await _list(api, "Company", _filter="name = 'a' and")
    assert "position" in next(iter(_errors(syntax)))


# --- order, paging, fields, counts ----------------------------------------------------


async def test_order_by_several_fields_descending_with_nulls_last(api: Api) -> None:
    await _seed(api)
    by = await _titles(api, "Company", "name", _order="employees")
    assert by == ["Alpha", "Delta", "Beta", "Epsilon", "Gamma"]
    by = await _titles(api, "Company", "name", _order="-employees")
    assert by == ["Epsilon", "Beta", "Alpha", "Delta", "Gamma"]
    by = await _titles(api, "Company", "name", _order="industry,-name")
    assert by == ["Beta", "Gamma", "Delta", "Alpha", "Epsilon"]
    by = await _titles(api, "Company", "name", _order="-employees,-id")
    assert by == ["Epsilon", "Beta", "Delta", "Alpha", "Gamma"]
    by = await _titles(api, "Company", "name", _order="annual_revenue")
    assert by == ["Delta", "Alpha", "Beta", "Gamma", "Epsilon"]
    by = await _titles(api, "Company", "name")
    assert by == ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]  # by id by default
    for bad in ("nosuch", "tags", "-internal_rating", "name,,x y"):
        response = await _list(api, "Company", _order=bad)
        assert response.status_code == 422, f"{bad}: {response.text}"


async def _bulk_companies(api: Api, count: int) -> None:
    """Insert plain companies straight into the table (fast), before any read."""
    now = dt.datetime.now(dt.UTC)
    async with api.db() as services:
        table = services.schema.records["Company"]
        async with services.writer.begin() as conn:
            await conn.execute(
                insert(table),
                [
                    {"name": f"Bulk {n:04d}", "employees": n, "created_on": now, "updated_on": now}
                    for n in range(count)
                ],
            )


async def test_limit_default_maximum_offset_and_exact_count(api: Api) -> None:
    await _bulk_companies(api, 1001)
    default = await _list(api, "Company", _order="employees")
    assert default.status_code == 200
    body = default.json()
    assert len(body["data"]) == 50
    assert body["meta"]["limit"] == 50
    assert body["meta"]["offset"] == 0
    assert "total" not in body["meta"]
    assert "next" in body["meta"]

    most = await _list(api, "Company", _limit=1000, _fields="id", _count=1)
    assert most.status_code == 200
    assert len(most.json()["data"]) == 1000
    assert most.json()["meta"]["total"] == 1001

    for too_many in (1001, 0, -1, "ten"):
        response = await _list(api, "Company", _limit=too_many)
        assert response.status_code in {400, 422}, f"{too_many}: {response.text}"

    page = await _list(api, "Company", _order="employees", _limit=5, _offset=998, _count=1)
    assert page.status_code == 200
    assert [r["employees"] for r in page.json()["data"]] == [998, 999, 1000]
    assert page.json()["meta"] == {"limit": 5, "offset": 998, "total": 1001}

    counted = await _list(api, "Company", _filter="employees < 100", _limit=7, _count=1)
    assert len(counted.json()["data"]) == 7
    assert counted.json()["meta"]["total"] == 100
    empty = await _list(api, "Company", _filter="employees < 0", _count=1)
    assert empty.json() == {"data": [], "meta": {"limit": 50, "offset": 0, "total": 0}}

    for bad in (-1, "x"):
        response = await _list(api, "Company", _offset=bad)
        assert response.status_code in {400, 422}, response.text


async def test_fields_and_hide_choose_the_output(api: Api) -> None:
    ids = await _seed(api)
    shown = await _list(api, "Company", _fields="name,tags", _filter="name = 'Alpha'")
    assert shown.json()["data"] == [{"id": ids["Alpha"], "name": "Alpha", "tags": ["b2b", "cloud"]}]

    hidden = await _list(api, "Company", _hide="tags,annual_revenue,id", _filter="name = 'Beta'")
    record = hidden.json()["data"][0]
    assert record["id"] == ids["Beta"]  # the id is always shown
    assert "tags" not in record
    assert "annual_revenue" not in record
    assert record["name"] == "Beta"
    assert set(record) >= {"created_on", "updated_on", "created_by", "updated_by", "employees"}

    full = await _list(api, "Company", _filter="name = 'Beta'")
    assert full.json()["data"][0]["annual_revenue"] == "250000.50"
    assert "internal_rating" not in full.json()["data"][0]

    for params in (
        {"_fields": "name,nosuch"},
        {"_hide": "nosuch,other"},
        {"_fields": "internal_rating"},
        {"_hide": "internal_rating"},
    ):
        response = await _list(api, "Company", **params)
        assert response.status_code == 422, f"{params}: {response.text}"
    both = await _list(api, "Company", _fields="nosuch", _hide="other")
    assert _errors(both) == {"fields", "hide"}

    ordered = await _titles(api, "Company", "name", _fields="name", _order="-employees")
    assert ordered == ["Epsilon", "Beta", "Alpha", "Delta", "Gamma"]


async def test_plain_parameters_are_equality_filters(api: Api) -> None:
    ids = await _seed(api)
    assert set(await _titles(api, "Company", "name", employees=10)) == {"Alpha", "Delta"}
    assert await _titles(api, "Company", "name", industry="retail") == ["Gamma"]
    assert set(await _titles(api, "Company", "name", tags="b2b")) == {"Alpha", "Beta"}
    assert await _titles(api, "Company", "name", tags="b2b", employees=50) == ["Beta"]
    assert await _titles(api, "Contact", "full_name", newsletter="true") == ["Ann"]
    assert await _titles(api, "Contact", "full_name", newsletter="false") == ["Bob"]
    assert await _titles(api, "Deal", "title", status="won") == ["Two"]
    assert set(await _titles(api, "Deal", "title", contacts=ids["Bob"])) == {"One", "Two"}
    assert await _titles(api, "Deal", "title", amount="100.00") == ["One"]
    combined = await _titles(api, "Company", "name", industry="software", _filter="employees = 10")
    assert set(combined) == {"Alpha", "Delta"}
    for params in (
        {"employees": "ten"},
        {"newsletter": "yes"},
        {"industry": "aerospace"},
        {"nosuch": "1"},
        {"internal_rating": "1"},
    ):
        type_name = "Contact" if "newsletter" in params else "Company"
        response = await _list(api, type_name, **params)
        assert response.status_code == 422, f"{params}: {response.text}"


async def test_get_by_id_and_by_a_unique_property(api: Api) -> None:
    ids = await _seed(api)
    admin = api.auth(api.admin_key)
    one = await api.client.get(f"{COLLECTIONS}/Deal/{ids['One']}", headers=admin)
    assert one.status_code == 200, one.text
    deal = one.json()["data"]
    assert deal["title"] == "One"
    assert deal["company"] == ids["Alpha"]
    assert deal["contacts"] == [ids["Ann"], ids["Bob"]]
    assert deal["amount"] == "100.00"
    assert deal["closed_on"] is None

    missing = await api.client.get(f"{COLLECTIONS}/Deal/999999", headers=admin)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    for bad in ("0", "-1", "abc", "99999999999999999999", "9223372036854775808"):
        response = await api.client.get(f"{COLLECTIONS}/Deal/{bad}", headers=admin)
        assert response.status_code in {400, 404, 422}, f"{bad}: {response.text}"

    by = await api.client.get(f"{COLLECTIONS}/Company/by/registration_no/R2", headers=admin)
    assert by.status_code == 200, by.text
    assert by.json()["data"]["id"] == ids["Beta"]
    by_email = await api.client.get(
        f"{COLLECTIONS}/Contact/by/email/ann@example.com", headers=admin
    )
    assert by_email.json()["data"]["id"] == ids["Ann"]
    absent = await api.client.get(f"{COLLECTIONS}/Company/by/registration_no/R9", headers=admin)
    assert absent.status_code == 404
    not_unique = await api.client.get(f"{COLLECTIONS}/Company/by/name/Alpha", headers=admin)
    assert not_unique.status_code == 422
    unknown = await api.client.get(f"{COLLECTIONS}/Company/by/nosuch/x", headers=admin)
    assert unknown.status_code == 422
    internal = await api.client.get(f"{COLLECTIONS}/Company/by/internal_rating/1", headers=admin)
    assert internal.status_code == 422


async def test_search_and_its_post_alias_match_get(api: Api) -> None:
    await _seed(api)
    admin = api.auth(api.admin_key)
    text = "industry in ('software', 'manufacturing') and employees >= 10"
    json_filter = {
        "and": [
            {"industry": {"in": ["software", "manufacturing"]}},
            {"employees": {"gte": 10}},
        ]
    }
    expected = await _list(
        api, "Company", _filter=text, _order="-employees,name", _fields="name,employees", _count=1
    )
    assert expected.status_code == 200
    assert [r["name"] for r in expected.json()["data"]] == ["Beta", "Alpha", "Delta"]
    bodies: list[dict[str, Any]] = [
        {"filter": text, "order": "-employees,name", "fields": "name,employees", "count": True},
        {
            "filter": json_filter,
            "order": ["-employees", "name"],
            "fields": ["name", "employees"],
            "count": True,
        },
    ]
    for body in bodies:
        searched = await api.client.request(
            "SEARCH", f"{COLLECTIONS}/Company", json=body, headers=admin
        )
        assert searched.status_code == 200, searched.text
        assert searched.json() == expected.json()
        posted = await api.client.post(f"{COLLECTIONS}/Company/search", json=body, headers=admin)
        assert posted.status_code == 200, posted.text
        assert posted.json() == expected.json()

    nested = {"or": [{"not": {"employees": {"lt": 100}}}, {"name": {"startswith": "Al"}}]}
    searched = await api.client.post(
        f"{COLLECTIONS}/Company/search", json={"filter": nested}, headers=admin
    )
    assert {r["name"] for r in searched.json()["data"]} == {"Alpha", "Epsilon", "Gamma"}
    isnull = {"industry": {"isnull": True}}
    searched = await api.client.post(
        f"{COLLECTIONS}/Company/search", json={"filter": isnull}, headers=admin
    )
    assert [r["name"] for r in searched.json()["data"]] == ["Epsilon"]

    for bad in (
        {"filter": {"employees": {"like": 1}}},
        {"filter": {"nosuch": {"eq": 1}}},
        {"filter": 5},
        {"limit": 1001},
        {"unknown": 1},
        {"hide": ["nosuch"]},
    ):
        response = await api.client.request(
            "SEARCH", f"{COLLECTIONS}/Company", json=bad, headers=admin
        )
        assert response.status_code in {400, 422}, f"{bad}: {response.text}"
    unknown_op = await api.client.post(
        f"{COLLECTIONS}/Company/search",
        json={"filter": {"employees": {"like": 1}}},
        headers=admin,
    )
    assert unknown_op.status_code == 422
    assert _errors(unknown_op) == {"filter (employees.like)"}
    unknown_field = await api.client.post(
        f"{COLLECTIONS}/Company/search",
        json={"filter": {"and": [{"name": {"eq": "x"}}, {"nosuch": {"eq": 1}}]}},
        headers=admin,
    )
    assert unknown_field.status_code == 422
    assert _errors(unknown_field) == {"filter (and[1].nosuch)"}


async def test_api_false_types_and_properties_do_not_exist(api: Api) -> None:
    await _seed(api)
    admin = api.auth(api.admin_key)
    for method, path in (
        ("GET", "/SyncCursor"),
        ("GET", "/SyncCursor/1"),
        ("POST", "/SyncCursor"),
        ("SEARCH", "/SyncCursor"),
        ("GET", "/NoSuchType"),
    ):
        kwargs: dict[str, Any] = {"json": {}} if method in {"POST", "SEARCH"} else {}
        response = await api.client.request(method, f"{COLLECTIONS}{path}", headers=admin, **kwargs)
        assert response.status_code == 404, f"{method} {path}: {response.text}"
    for params in (
        {"_filter": "internal_rating = 1"},
        {"_filter": "internal_rating is null"},
        {"_order": "internal_rating"},
        {"_fields": "name,internal_rating"},
    ):
        response = await _list(api, "Company", **params)
        assert response.status_code == 422, f"{params}: {response.text}"
    through = await _list(api, "Deal", _filter="company.internal_rating = 1")
    assert through.status_code == 422
    listed = await _list(api, "Company")
    assert all("internal_rating" not in r for r in listed.json()["data"])


# --- keyset cursors -----------------------------------------------------------------


async def _walk(
    api: Api, order: str, inserts: dict[int, list[dict[str, Any]]], page_size: int = 3
) -> tuple[list[int], dict[int, list[int]]]:
    """Page through Company by `order`, creating `inserts[page]` after each page."""
    seen: list[int] = []
    added: dict[int, list[int]] = {}
    cursor: str | None = None
    for page_number in range(100):
        params: dict[str, Param] = {"_order": order, "_limit": page_size, "_fields": "name"}
        if cursor is not None:
            params["_after"] = cursor
        response = await _list(api, "Company", **params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [r["id"] for r in body["data"]]
        added[page_number] = [
            (await _create(api, "Company", c))["id"] for c in inserts.get(page_number, [])
        ]
        cursor = body["meta"].get("next")
        if cursor is None:
            return seen, added
    raise AssertionError("paging never ended")


@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
async def test_cursor_visits_every_row_once_while_rows_are_inserted(
    api: Api, descending: bool
) -> None:
    employees = [5, 5, None, 10, 10, 10, None, 20, 30, 30, None, 40]
    initial = [
        (await _create(api, "Company", {"name": f"C{n}", "employees": e}))["id"]
        for n, e in enumerate(employees)
    ]
    # After the first page (asc: 5, 5, 10; desc: 40, 30, 30): rows that sort before
    # the cursor (never to be seen) and after it (to be seen once).
    if descending:
        before = [{"employees": 99}, {"employees": 40}]
        after = [{"employees": 30}, {"employees": 1}, {}]
    else:
        before = [{"employees": 1}, {"employees": 5}]
        after = [{"employees": 10}, {"employees": 35}, {}]
    inserts: dict[int, list[dict[str, Any]]] = {
        0: [{"name": "new", **body} for body in (*before, *after)],
        2: [{"name": "new", "employees": None}],
    }
    seen, added = await _walk(api, "-employees" if descending else "employees", inserts)
    assert len(seen) == len(set(seen)), "a row was visited twice"
    assert set(initial) <= set(seen), "a row was skipped"
    first_page = added[0]
    assert not set(first_page[: len(before)]) & set(seen)
    assert set(first_page[len(before) :]) <= set(seen)
    assert set(added[2]) <= set(seen)  # a NULL sorts last in both directions

    everything = await _list(
        api, "Company", _order="-employees" if descending else "employees", _limit=1000
    )
    expected_order = [r["id"] for r in everything.json()["data"] if r["id"] in set(seen)]
    assert seen == expected_order


async def test_cursor_orders_of_every_kind_page_to_the_end(api: Api) -> None:
    ids = await _seed(api)
    await _create(api, "Contact", {"full_name": "Dee", "birthday": "1990-01-02"})
    await _create(api, "Contact", {"full_name": "Eve", "birthday": "1990-01-02"})
    await _create(api, "Contact", {"full_name": "Fay", "birthday": "1985-05-06"})
    admin = api.auth(api.admin_key)
    for n in range(4):
        response = await api.client.patch(
            f"{COLLECTIONS}/Deal/{ids['One' if n % 2 else 'Two']}",
            json={"closed_on": f"2026-05-2{n}T09:00:00+02:00", "expected_close": "2026-06"},
            headers=admin,
        )
        assert response.status_code == 200, response.text
    cases = [
        ("Company", "annual_revenue"),
        ("Company", "-annual_revenue"),
        ("Company", "name"),
        ("Company", "-industry,name"),
        ("Company", "-created_on"),
        ("Contact", "birthday"),
        ("Contact", "-newsletter"),
        ("Deal", "closed_on"),
        ("Deal", "-expected_close,-closed_on"),
        ("Deal", "company,-amount"),
    ]
    for type_name, order in cases:
        full = await _list(api, type_name, _order=order, _limit=1000)
        assert full.status_code == 200, f"{order}: {full.text}"
        expected = [r["id"] for r in full.json()["data"]]
        seen: list[int] = []
        cursor: str | None = None
        while True:
            params: dict[str, Param] = {"_order": order, "_limit": 2}
            if cursor is not None:
                params["_after"] = cursor
            page = await _list(api, type_name, **params)
            assert page.status_code == 200, f"{type_name} {order}: {page.text}"
            seen += [r["id"] for r in page.json()["data"]]
            cursor = page.json()["meta"].get("next")
            if cursor is None:
                break
            assert len(seen) <= len(expected), f"{type_name} {order}: paging never ends"
        assert seen == expected, f"{type_name} {order}"


async def test_a_cursor_belongs_to_its_order(api: Api) -> None:
    await _seed(api)
    first = await _list(api, "Company", _order="employees", _limit=2)
    cursor = first.json()["meta"]["next"]
    same = await _list(api, "Company", _order="employees", _limit=2, _after=cursor)
    assert same.status_code == 200
    for params in (
        {"_order": "name"},
        {"_order": "-employees"},
        {},
        {"_order": "employees", "_offset": 2},
    ):
        response = await _list(api, "Company", _limit=2, _after=cursor, **params)
        assert response.status_code == 422, f"{params}: {response.text}"
    for garbage in ("x", "!!!", "eyJ4IjoxfQ", "W10", cursor[:-3], "A" * 5000):
        response = await _list(api, "Company", _order="employees", _after=garbage)
        assert response.status_code in {400, 422}, f"{garbage}: {response.text}"


def _forged(order: str, last: list[object]) -> str:
    """A cursor as a client could forge one: the order key is only a hash of the order."""
    key = hashlib.sha256(f"{order},id".encode()).hexdigest()[:12]
    raw = json.dumps([key, last]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_forged_cursor_values_are_422_never_a_server_error(api: Api) -> None:
    await _seed(api)
    forged: list[tuple[str, list[object]]] = [
        ("employees", [2**70, 1]),
        ("employees", ["ten", 1]),
        ("employees", [10, 2**70]),
        ("annual_revenue", ["1e400", 1]),
        ("annual_revenue", ["99999999999999999999999.99", 1]),
        ("annual_revenue", ["NaN", 1]),
        ("created_on", ["0001-01-01T00:00:00+14:00", 1]),
        ("created_on", ["yesterday", 1]),
        ("name", [5, 1]),
        ("industry", [True, 1]),
    ]
    for order, last in forged:
        response = await _list(api, "Company", _order=order, _after=_forged(order, last))
        assert response.status_code == 422, f"{order} {last}: {response.text}"
    genuine = await _list(api, "Company", _order="employees", _after=_forged("employees", [10, 1]))
    assert [r["name"] for r in genuine.json()["data"]] == ["Delta", "Beta", "Epsilon", "Gamma"]


async def test_id_in_the_order_ends_it(api: Api) -> None:
    await _seed(api)
    by_id = await _titles(api, "Company", "name", _order="-id,name")
    assert by_id == ["Epsilon", "Delta", "Gamma", "Beta", "Alpha"]
    by_id = await _titles(api, "Company", "name", _order="id,-employees")
    assert by_id == ["Alpha", "Beta", "Gamma", "Delta", "Epsilon"]
    first = await _list(api, "Company", _order="-id,name", _limit=2)
    cursor = first.json()["meta"]["next"]
    rest = await _titles(api, "Company", "name", _order="-id,name", _after=cursor)
    assert rest == ["Gamma", "Beta", "Alpha"]
