"""Writing `/api/v1/collections/{T}` on the demo tenant (both backends).

POST/PATCH/PUT/DELETE round trips, validation per kind, refused fields listed, unique
conflicts, references, server-set system fields, multi-valued properties, and deleting
a record other records still reference.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from httpx import Response
from sqlalchemy import select

from tests.conftest import Api

COLLECTIONS = "/api/v1/collections"


def _errors(response: Response) -> set[str]:
    body: dict[str, Any] = response.json()
    return {e["field"] for e in body.get("errors", [])}


async def _send(
    api: Api, method: str, path: str, body: object = None, key: str | None = None
) -> Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    return await api.client.request(
        method, f"{COLLECTIONS}/{path}", headers=api.auth(key or api.admin_key), **kwargs
    )


async def _create(api: Api, type_name: str, body: dict[str, Any], key: str | None = None) -> Any:
    response = await _send(api, "POST", type_name, body, key)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_create_read_patch_put_delete_round_trip(api: Api) -> None:
    company = await _create(api, "Company", {"name": "Acme"})
    ann = await _create(api, "Contact", {"full_name": "Ann", "company": company["id"]})
    body = {
        "title": "Big deal",
        "company": company["id"],
        "contacts": [ann["id"]],
        "status": "open",
        "amount": "1234.50",
        "expected_close": "2026-07",
        "closed_on": "2026-05-22T09:00:00+02:00",
        "margin_percent": "12.5",
    }
    created = await _send(api, "POST", "Deal", body)
    assert created.status_code == 201, created.text
    deal = created.json()["data"]
    expected = {
        **body,
        "amount": "1234.50",
        "margin_percent": "12.50",
        "closed_on": "2026-05-22T09:00:00+02:00",
    }
    assert {k: deal[k] for k in body} == expected
    assert set(deal) == {
        "id",
        "created_on",
        "updated_on",
        "created_by",
        "updated_by",
        *body,
    }
    got = await _send(api, "GET", f"Deal/{deal['id']}")
    assert got.json()["data"] == deal

    patched = await _send(api, "PATCH", f"Deal/{deal['id']}", {"status": "won", "amount": None})
    assert patched.status_code == 200, patched.text
    after_patch = patched.json()["data"]
    assert after_patch["status"] == "won"
    assert after_patch["amount"] is None
    assert after_patch["title"] == "Big deal"  # untouched by a PATCH
    assert after_patch["contacts"] == [ann["id"]]
    assert (await _send(api, "GET", f"Deal/{deal['id']}")).json()["data"] == after_patch

    empty = await _send(api, "PATCH", f"Deal/{deal['id']}", {})
    assert empty.status_code == 200
    assert {k: v for k, v in empty.json()["data"].items() if k != "updated_on"} == {
        k: v for k, v in after_patch.items() if k != "updated_on"
    }

    replaced = await _send(
        api,
        "PUT",
        f"Deal/{deal['id']}",
        {"title": "Replaced", "company": company["id"], "status": "lost"},
    )
    assert replaced.status_code == 200, replaced.text
    record = replaced.json()["data"]
    assert record["title"] == "Replaced"
    assert record["status"] == "lost"
    for cleared in ("amount", "expected_close", "closed_on", "margin_percent"):
        assert record[cleared] is None, cleared
    assert record["contacts"] == []
    assert record["created_on"] == deal["created_on"]

    incomplete = await _send(api, "PUT", f"Deal/{deal['id']}", {"title": "No company"})
    assert incomplete.status_code == 422
    assert _errors(incomplete) >= {"company", "status"}

    deleted = await _send(api, "DELETE", f"Deal/{deal['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await _send(api, "GET", f"Deal/{deal['id']}")).status_code == 404
    assert (await _send(api, "DELETE", f"Deal/{deal['id']}")).status_code == 404
    gone = await _send(api, "PATCH", f"Deal/{deal['id']}", {"title": "x"})
    assert gone.status_code == 404
    gone = await _send(
        api, "PUT", f"Deal/{deal['id']}", {"title": "x", "company": company["id"], "status": "open"}
    )
    assert gone.status_code == 404
    calls: list[tuple[str, dict[str, Any] | None]] = [
        ("GET", None),
        ("PATCH", {"title": "x"}),
        ("DELETE", None),
    ]
    for huge in ("9223372036854775808", "99999999999999999999"):
        for method, payload in calls:
            response = await _send(api, method, f"Deal/{huge}", payload)
            assert response.status_code in {400, 404, 422}, f"{method} {huge}: {response.text}"


_INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("Company", {}, "name"),
    ("Company", {"name": None}, "name"),
    ("Company", {"name": "x" * 201}, "name"),
    ("Company", {"name": "A", "registration_no": "x" * 33}, "registration_no"),
    ("Company", {"name": "A", "industry": "aerospace"}, "industry"),
    ("Company", {"name": "A", "industry": "Software"}, "industry"),
    ("Company", {"name": "A", "employees": "12"}, "employees"),
    ("Company", {"name": "A", "employees": 1.5}, "employees"),
    ("Company", {"name": "A", "employees": True}, "employees"),
    ("Company", {"name": "A", "employees": 2**63}, "employees"),
    ("Company", {"name": "A", "annual_revenue": "1.234"}, "annual_revenue"),
    ("Company", {"name": "A", "annual_revenue": 1.234}, "annual_revenue"),
    ("Company", {"name": "A", "annual_revenue": 0.1 + 0.2}, "annual_revenue"),
    ("Company", {"name": "A", "annual_revenue": "123456789012345.00"}, "annual_revenue"),
    ("Company", {"name": "A", "annual_revenue": "12,50"}, "annual_revenue"),
    ("Company", {"name": "A", "annual_revenue": "NaN"}, "annual_revenue"),
    ("Company", {"name": "A", "tags": "b2b"}, "tags"),
    ("Company", {"name": "A", "tags": ["x" * 41]}, "tags"),
    ("Company", {"name": "A", "tags": ["ok", None]}, "tags"),
    ("Company", {"name": "A\x00"}, "name"),
    ("Contact", {"full_name": "A", "email": "not-an-email"}, "email"),
    ("Contact", {"full_name": "A", "email": "a@b"}, "email"),
    ("Contact", {"full_name": "A", "phone": "call me"}, "phone"),
    ("Contact", {"full_name": "A", "newsletter": "yes"}, "newsletter"),
    ("Contact", {"full_name": "A", "newsletter": 1}, "newsletter"),
    ("Contact", {"full_name": "A", "birthday": "2026-13-01"}, "birthday"),
    ("Contact", {"full_name": "A", "birthday": "yesterday"}, "birthday"),
    ("Contact", {"full_name": "A", "company": 0}, "company"),
    ("Contact", {"full_name": "A", "company": "1"}, "company"),
    ("Deal", {"title": "A", "company": 1}, "status"),
    ("Deal", {"title": "A", "status": "open"}, "company"),
    (
        "Deal",
        {"title": "A", "company": 1, "status": "open", "expected_close": "2026-13"},
        "expected_close",
    ),
    ("Deal", {"title": "A", "company": 1, "status": "open", "closed_on": "soon"}, "closed_on"),
    ("Deal", {"title": "A", "company": 1, "status": "open", "contacts": [0]}, "contacts"),
    ("Activity", {"subject": "A", "kind": "visit"}, "kind"),
    ("Activity", {"subject": "A", "kind": "call", "body": "x" * 20001}, "body"),
]


async def test_validation_per_kind_is_422_naming_the_field(api: Api) -> None:
    await _create(api, "Company", {"name": "Referenced"})  # id 1 exists for the Deal cases
    for type_name, body, field in _INVALID:
        response = await _send(api, "POST", type_name, body)
        assert response.status_code == 422, f"{type_name} {body}: {response.text}"
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in _errors(response), (body, response.text)
    listed = await _send(api, "GET", "Company?_count=1")
    assert listed.json()["meta"]["total"] == 1  # nothing invalid was stored


async def test_valid_values_are_normalised(api: Api) -> None:
    company = await _create(
        api,
        "Company",
        {"name": "A", "annual_revenue": 1.5, "employees": 0, "tags": ["z", "a", "m"]},
    )
    assert company["annual_revenue"] == "1.50"
    assert company["employees"] == 0
    assert company["tags"] == ["z", "a", "m"]
    for sent, shown in (("1.230", "1.23"), ("-0.00", "0.00"), (" 7 ", "7.00"), (12, "12.00")):
        patched = await _send(api, "PATCH", f"Company/{company['id']}", {"annual_revenue": sent})
        assert patched.status_code == 200, f"{sent}: {patched.text}"
        assert patched.json()["data"]["annual_revenue"] == shown
    big = await _send(
        api, "PATCH", f"Company/{company['id']}", {"annual_revenue": "99999999999999.99"}
    )
    assert big.json()["data"]["annual_revenue"] == "99999999999999.99"

    contact = await _create(
        api,
        "Contact",
        {
            "full_name": "B",
            "email": "Bob.Smith@Example.COM",
            "phone": "+420 123-456 789",
            "birthday": "1990-02-03",
        },
    )
    assert contact["email"] == "Bob.Smith@example.com"
    assert contact["phone"] == "+420123456789"
    assert contact["birthday"] == "1990-02-03"
    deal = await _create(
        api,
        "Deal",
        {"title": "D", "company": company["id"], "status": "open", "expected_close": "2026-07-15"},
    )
    assert deal["expected_close"] == "2026-07"


async def test_unknown_read_only_and_system_fields_are_all_listed(api: Api) -> None:
    company = await _create(api, "Company", {"name": "A"})
    refused = {
        "nosuch": 1,
        "other": "x",
        "internal_rating": 5,
        "id": 99,
        "created_on": "2026-01-01T00:00:00Z",
        "updated_on": "2026-01-01T00:00:00Z",
        "created_by": 1,
        "updated_by": 1,
    }
    for method, path in (("POST", "Company"), ("PATCH", f"Company/{company['id']}")):
        response = await _send(api, method, path, {"name": "B", **refused})
        assert response.status_code == 422, response.text
        assert _errors(response) == set(refused), f"{method}: {response.text}"
    put = await _send(api, "PUT", f"Company/{company['id']}", {"name": "B", **refused})
    assert put.status_code == 422
    assert _errors(put) == set(refused)
    one = await _send(api, "POST", "Company", {"name": "B", "created_by": 1})
    assert one.status_code == 422
    assert _errors(one) == {"created_by"}
    document = await _send(api, "POST", "Document", {"title": "D", "file": "abc"})
    assert document.status_code == 422
    assert _errors(document) == {"file"}
    unchanged = await _send(api, "GET", f"Company/{company['id']}")
    assert unchanged.json()["data"]["name"] == "A"
    listed = await _send(api, "GET", "Company?_count=1")
    assert listed.json()["meta"]["total"] == 1


async def test_unique_violation_is_409_naming_the_property(api: Api) -> None:
    first = await _create(api, "Company", {"name": "A", "registration_no": "R1"})
    second = await _create(api, "Company", {"name": "B", "registration_no": "R2"})
    duplicate = await _send(api, "POST", "Company", {"name": "C", "registration_no": "R1"})
    assert duplicate.status_code == 409, duplicate.text
    problem = duplicate.json()
    assert "registration_no" in problem["detail"]
    assert problem["errors"][0]["field"] == "registration_no"

    patched = await _send(api, "PATCH", f"Company/{second['id']}", {"registration_no": "R1"})
    assert patched.status_code == 409
    assert patched.json()["errors"][0]["field"] == "registration_no"
    same = await _send(api, "PATCH", f"Company/{first['id']}", {"registration_no": "R1"})
    assert same.status_code == 200  # a record does not collide with itself

    await _create(api, "Contact", {"full_name": "Ann", "email": "ann@example.com"})
    again = await _send(api, "POST", "Contact", {"full_name": "Ann 2", "email": "ann@EXAMPLE.com"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "email"

    nulls = [await _send(api, "POST", "Company", {"name": f"N{n}"}) for n in range(2)]
    assert all(r.status_code == 201 for r in nulls)  # NULLs never collide
    listed = await _send(api, "GET", "Company?_count=1")
    assert listed.json()["meta"]["total"] == 4


async def test_references_must_name_existing_records(api: Api) -> None:
    company = await _create(api, "Company", {"name": "A"})
    ann = await _create(api, "Contact", {"full_name": "Ann"})
    missing = await _send(api, "POST", "Deal", {"title": "D", "company": 999999, "status": "open"})
    assert missing.status_code == 422, missing.text
    assert _errors(missing) == {"company"}
    both = await _send(
        api,
        "POST",
        "Deal",
        {"title": "D", "company": 999998, "contacts": [ann["id"], 999999], "status": "open"},
    )
    assert both.status_code == 422
    assert _errors(both) == {"company", "contacts"}
    deal = await _create(api, "Deal", {"title": "D", "company": company["id"], "status": "open"})
    patched = await _send(api, "PATCH", f"Deal/{deal['id']}", {"contacts": [999999]})
    assert patched.status_code == 422
    assert _errors(patched) == {"contacts"}
    assert (await _send(api, "GET", f"Deal/{deal['id']}")).json()["data"]["contacts"] == []


async def test_system_fields_are_set_by_the_server(api: Api) -> None:
    first_id = await api.create_user("ivan", roles=["integration"])
    second_id = await api.create_user("jana", roles=["integration"])
    ivan, jana = await api.login("ivan"), await api.login("jana")
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    created = await _create(api, "Company", {"name": "A"}, key=ivan)
    assert created["created_by"] == first_id
    assert created["updated_by"] == first_id
    created_on = dt.datetime.fromisoformat(created["created_on"])
    prague = ZoneInfo("Europe/Prague")  # the tenant's default zone: ivan has none
    assert created_on.utcoffset() == created_on.astimezone(prague).utcoffset()
    assert before <= created_on <= dt.datetime.now(dt.UTC)
    assert created["updated_on"] == created["created_on"]

    patched = await _send(api, "PATCH", f"Company/{created['id']}", {"employees": 3}, key=jana)
    assert patched.status_code == 200, patched.text
    record = patched.json()["data"]
    assert record["created_by"] == first_id
    assert record["updated_by"] == second_id
    assert record["created_on"] == created["created_on"]
    assert dt.datetime.fromisoformat(record["updated_on"]) >= created_on

    async with api.db() as services:
        table = services.schema.records["Company"]
        async with services.engine.connect() as conn:
            row = (
                (await conn.execute(select(table).where(table.c.id == created["id"])))
                .mappings()
                .one()
            )
    assert (row["created_by"], row["updated_by"]) == (first_id, second_id)
    assert row["created_on"] == created_on


async def test_multi_valued_properties_round_trip_in_order(api: Api) -> None:
    company = await _create(api, "Company", {"name": "A", "tags": ["z", "a", "m"]})
    contacts = [(await _create(api, "Contact", {"full_name": f"C{n}"}))["id"] for n in range(3)]
    c0, c1, c2 = contacts
    deal = await _create(
        api,
        "Deal",
        {
            "title": "D",
            "company": company["id"],
            "status": "open",
            "contacts": [c2, c0, c2, c1],
        },
    )
    assert deal["contacts"] == [c2, c0, c1]  # a record is referenced once, first place kept
    path = f"Deal/{deal['id']}"
    assert (await _send(api, "GET", path)).json()["data"]["contacts"] == [c2, c0, c1]

    patched = await _send(api, "PATCH", path, {"contacts": [c1, c2]})
    assert patched.json()["data"]["contacts"] == [c1, c2]
    untouched = await _send(api, "PATCH", path, {"title": "E"})
    assert untouched.json()["data"]["contacts"] == [c1, c2]
    nulled = await _send(api, "PATCH", path, {"contacts": None})
    assert nulled.json()["data"]["contacts"] == []
    await _send(api, "PATCH", path, {"contacts": [c0]})
    put = await _send(api, "PUT", path, {"title": "F", "company": company["id"], "status": "open"})
    assert put.json()["data"]["contacts"] == []

    tags_path = f"Company/{company['id']}"
    assert (await _send(api, "GET", tags_path)).json()["data"]["tags"] == ["z", "a", "m"]
    patched = await _send(api, "PATCH", tags_path, {"tags": ["m", "b", "a", "b"]})
    assert patched.json()["data"]["tags"] == ["m", "b", "a", "b"]
    listed = await _send(api, "GET", "Company?_fields=tags")
    assert listed.json()["data"] == [{"id": company["id"], "tags": ["m", "b", "a", "b"]}]
    cleared = await _send(api, "PATCH", tags_path, {"tags": []})
    assert cleared.json()["data"]["tags"] == []


async def test_a_required_reference_keeps_its_target(api: Api) -> None:
    company = await _create(api, "Company", {"name": "A"})
    ann = await _create(api, "Contact", {"full_name": "Ann", "company": company["id"]})
    bob = await _create(api, "Contact", {"full_name": "Bob"})
    deal = await _create(
        api,
        "Deal",
        {
            "title": "D",
            "company": company["id"],
            "status": "open",
            "contacts": [ann["id"], bob["id"]],
        },
    )
    removed = await _send(api, "DELETE", f"Contact/{ann['id']}")
    assert removed.status_code == 204
    assert (await _send(api, "GET", f"Deal/{deal['id']}")).json()["data"]["contacts"] == [bob["id"]]

    # Deal.company is required: its target stays until no deal needs it (409),
    # while Contact.company is optional and would simply be cleared.
    response = await _send(api, "DELETE", f"Company/{company['id']}")
    assert response.status_code == 409, response.text
    assert response.json()["status"] == 409
    assert (await _send(api, "GET", f"Company/{company['id']}")).status_code == 200
    after = (await _send(api, "GET", f"Deal/{deal['id']}")).json()["data"]
    assert after["company"] == company["id"]
    assert (await _send(api, "DELETE", f"Deal/{deal['id']}")).status_code == 204
    assert (await _send(api, "DELETE", f"Company/{company['id']}")).status_code == 204
