"""The permission matrix of `/api/v1/collections` (both backends).

On the demo tenant: `integration` (own and expression scopes, a read-only field),
`reporter` (an expression read scope, hidden fields) and a user with no rights on any
type. On `tests/tenants/permissions.toml`: references to records outside the read
scope, hidden fields and unreadable types behind references, and writes to records
outside the read scope (404) or the update/delete scope (403).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import Response

from tests.conftest import TENANTS, Api, Backend, make_settings, start_api

COLLECTIONS = "/api/v1/collections"
Param = str | int
"""A query parameter's value."""


def _errors(response: Response) -> set[str]:
    body: dict[str, Any] = response.json()
    return {e["field"] for e in body.get("errors", [])}


async def _send(api: Api, key: str, method: str, path: str, body: object = None) -> Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    return await api.client.request(
        method, f"{COLLECTIONS}/{path}", headers=api.auth(key), **kwargs
    )


async def _create(api: Api, key: str, type_name: str, body: dict[str, Any]) -> int:
    response = await _send(api, key, "POST", type_name, body)
    assert response.status_code == 201, response.text
    record_id: int = response.json()["data"]["id"]
    return record_id


async def _ids(api: Api, key: str, type_name: str, **params: Param) -> set[int]:
    response = await api.client.get(
        f"{COLLECTIONS}/{type_name}", params=params, headers=api.auth(key)
    )
    assert response.status_code == 200, f"{params}: {response.text}"
    return {r["id"] for r in response.json()["data"]}


async def _user(api: Api, login: str, *roles: str) -> str:
    await api.create_user(login, roles=list(roles))
    return await api.login(login)


# --- the demo tenant ----------------------------------------------------------------


async def test_integration_deletes_only_the_contacts_it_created(api: Api) -> None:
    admin = api.admin_key
    integ = await _user(api, "ivan", "integration")
    other = await _user(api, "olga", "integration")
    reporter = await _user(api, "rita", "reporter")
    mine = await _create(api, integ, "Contact", {"full_name": "Mine"})
    theirs = await _create(api, other, "Contact", {"full_name": "Theirs"})
    admins = await _create(api, admin, "Contact", {"full_name": "Admin's"})

    for record_id in (theirs, admins):
        refused = await _send(api, integ, "DELETE", f"Contact/{record_id}")
        assert refused.status_code == 403, refused.text
    assert (await _send(api, reporter, "DELETE", f"Contact/{mine}")).status_code == 403
    assert (await _send(api, integ, "DELETE", "Contact/999999")).status_code == 404
    assert (await _send(api, integ, "DELETE", f"Contact/{mine}")).status_code == 204
    assert await _ids(api, admin, "Contact") == {theirs, admins}

    # Activity: update and delete "own".
    own = await _create(api, integ, "Activity", {"subject": "Call", "kind": "call"})
    foreign = await _create(api, admin, "Activity", {"subject": "Visit", "kind": "meeting"})
    assert (await _send(api, integ, "PATCH", f"Activity/{own}", {"done": True})).status_code == 200
    refused = await _send(api, integ, "PATCH", f"Activity/{foreign}", {"done": True})
    assert refused.status_code == 403
    assert (await _send(api, integ, "DELETE", f"Activity/{foreign}")).status_code == 403
    got = await _send(api, admin, "GET", f"Activity/{foreign}")
    assert got.json()["data"]["done"] is None  # the refused PATCH changed nothing


async def test_expression_scopes_for_reading_and_updating(api: Api) -> None:
    admin = api.admin_key
    integ = await _user(api, "ivan", "integration")
    reporter = await _user(api, "rita", "reporter")
    done = await _create(api, admin, "Activity", {"subject": "A", "kind": "call", "done": True})
    open_ = await _create(api, admin, "Activity", {"subject": "B", "kind": "call", "done": False})
    unset = await _create(api, admin, "Activity", {"subject": "C", "kind": "note"})

    assert await _ids(api, reporter, "Activity") == {done}
    assert await _ids(api, reporter, "Activity", _filter="done = false or done is null") == set()
    assert await _ids(api, reporter, "Activity", done="false") == set()
    counted = await api.client.get(
        f"{COLLECTIONS}/Activity", params={"_count": 1}, headers=api.auth(reporter)
    )
    assert counted.json()["meta"]["total"] == 1
    searched = await _send(
        api, reporter, "SEARCH", "Activity", {"filter": {"kind": {"eq": "call"}}}
    )
    assert [r["id"] for r in searched.json()["data"]] == [done]
    assert (await _send(api, reporter, "GET", f"Activity/{done}")).status_code == 200
    for hidden in (open_, unset):
        assert (await _send(api, reporter, "GET", f"Activity/{hidden}")).status_code == 404
    assert await _ids(api, integ, "Activity") == {done, open_, unset}

    company = await _create(api, admin, "Company", {"name": "Acme"})
    deal = {"company": company, "title": "D"}
    open_deal = await _create(api, admin, "Deal", {**deal, "status": "open"})
    won_deal = await _create(api, admin, "Deal", {**deal, "status": "won"})
    changed = await _send(api, integ, "PATCH", f"Deal/{open_deal}", {"title": "Renamed"})
    assert changed.status_code == 200, changed.text
    refused = await _send(api, integ, "PATCH", f"Deal/{won_deal}", {"title": "Renamed"})
    assert refused.status_code == 403
    replaced = await _send(
        api, integ, "PUT", f"Deal/{won_deal}", {**deal, "status": "open", "title": "Renamed"}
    )
    assert replaced.status_code == 403
    assert (await _send(api, admin, "GET", f"Deal/{won_deal}")).json()["data"]["title"] == "D"
    # The scope holds for the record as it is: closing an open deal is allowed, once.
    closed = await _send(api, integ, "PATCH", f"Deal/{open_deal}", {"status": "won"})
    assert closed.status_code == 200
    again = await _send(api, integ, "PATCH", f"Deal/{open_deal}", {"status": "open"})
    assert again.status_code == 403
    assert (await _send(api, integ, "DELETE", f"Deal/{open_deal}")).status_code == 403


_HIDDEN_FROM_REPORTER: list[tuple[str, dict[str, Param]]] = [
    ("Contact", {"_filter": "phone is null"}),
    ("Contact", {"_filter": "full_name = 'Ann' or birthday > 2000-01-01"}),
    ("Contact", {"_filter": "not notes ~ 'x'"}),
    ("Contact", {"_order": "birthday"}),
    ("Contact", {"_order": "full_name,-phone"}),
    ("Contact", {"_fields": "full_name,notes"}),
    ("Contact", {"_hide": "phone"}),
    ("Contact", {"phone": "123456"}),
    ("Deal", {"_filter": "margin_percent > 1"}),
    ("Deal", {"_order": "margin_percent"}),
    ("Deal", {"_fields": "margin_percent"}),
    ("Deal", {"_filter": "contacts.phone = '123456'"}),
    ("Deal", {"_filter": "contacts.birthday is not null"}),
    ("Deal", {"_filter": "status = 'open' and not contacts.notes ~ 'x'"}),
    ("Activity", {"_filter": "contact.phone ^= '+420'"}),
    ("Activity", {"_filter": "deal.margin_percent is null"}),
    ("Activity", {"_filter": "deal.contacts.birthday is null"}),
]


async def test_hidden_fields_are_absent_and_refused_everywhere(api: Api) -> None:
    admin = api.admin_key
    reporter = await _user(api, "rita", "reporter")
    both = await _user(api, "bea", "reporter", "integration")
    company = await _create(api, admin, "Company", {"name": "Acme"})
    ann = await _create(
        api,
        admin,
        "Contact",
        {
            "full_name": "Ann",
            "email": "ann@example.com",
            "phone": "+420 123 456",
            "birthday": "1990-01-02",
            "notes": "private",
        },
    )
    deal = await _create(
        api,
        admin,
        "Deal",
        {
            "title": "D",
            "company": company,
            "status": "open",
            "contacts": [ann],
            "margin_percent": "12.00",
        },
    )
    await _create(
        api, admin, "Activity", {"subject": "A", "kind": "call", "done": True, "contact": ann}
    )

    hidden_contact = {"phone", "birthday", "notes"}
    for path in (f"Contact/{ann}", "Contact/by/email/ann@example.com"):
        record = (await _send(api, reporter, "GET", path)).json()["data"]
        assert record["full_name"] == "Ann"
        assert not hidden_contact & set(record), path
    listed = await _send(api, reporter, "GET", "Contact")
    assert not hidden_contact & set(listed.json()["data"][0])
    assert (
        "margin_percent" not in (await _send(api, reporter, "GET", f"Deal/{deal}")).json()["data"]
    )
    searched = await _send(api, reporter, "SEARCH", "Deal", {})
    assert "margin_percent" not in searched.json()["data"][0]
    # The admin sees everything; a field one role shows is shown even if another hides it.
    full = (await _send(api, admin, "GET", f"Contact/{ann}")).json()["data"]
    assert full["phone"] == "+420123456"
    mixed = (await _send(api, both, "GET", f"Contact/{ann}")).json()["data"]
    assert mixed["phone"] == "+420123456"
    assert "margin_percent" not in (await _send(api, both, "GET", f"Deal/{deal}")).json()["data"]

    for type_name, params in _HIDDEN_FROM_REPORTER:
        response = await api.client.get(
            f"{COLLECTIONS}/{type_name}", params=params, headers=api.auth(reporter)
        )
        assert response.status_code == 422, f"{type_name} {params}: {response.text}"
        admin_response = await api.client.get(
            f"{COLLECTIONS}/{type_name}", params=params, headers=api.auth(admin)
        )
        assert admin_response.status_code == 200, f"{type_name} {params}: {admin_response.text}"
    for body in (
        {"filter": {"contacts.phone": {"eq": "123456"}}},
        {"filter": {"or": [{"title": {"eq": "D"}}, {"margin_percent": {"gt": 1}}]}},
        {"order": ["margin_percent"]},
        {"fields": ["title", "margin_percent"]},
    ):
        response = await _send(api, reporter, "SEARCH", "Deal", body)
        assert response.status_code == 422, f"{body}: {response.text}"

    visible_path = await _ids(api, reporter, "Deal", _filter="contacts.full_name = 'Ann'")
    assert visible_path == {deal}

    # Hidden fields cannot be written either (integration hides Deal.margin_percent).
    integ = await _user(api, "ivan", "integration")
    written = await _send(api, integ, "PATCH", f"Deal/{deal}", {"margin_percent": "1.00"})
    assert written.status_code == 422
    assert _errors(written) == {"margin_percent"}
    created = await _send(
        api,
        integ,
        "POST",
        "Deal",
        {"title": "E", "company": company, "status": "open", "margin_percent": "1.00"},
    )
    assert created.status_code == 422
    assert _errors(created) == {"margin_percent"}
    # A replace clears the omitted fields the caller may write, never those it cannot see.
    replaced = await _send(
        api, integ, "PUT", f"Deal/{deal}", {"title": "D2", "company": company, "status": "open"}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"]["contacts"] == []
    kept = (await _send(api, admin, "GET", f"Deal/{deal}")).json()["data"]
    assert kept["margin_percent"] == "12.00"
    assert kept["title"] == "D2"


async def test_types_without_a_right_are_forbidden(api: Api) -> None:
    admin = api.admin_key
    reporter = await _user(api, "rita", "reporter")
    nobody = await _user(api, "nora", "registrar")  # useApi, but no right on any type
    integ = await _user(api, "ivan", "integration")
    company = await _create(api, admin, "Company", {"name": "Acme"})
    document = await _create(api, admin, "Document", {"title": "Doc"})

    for method, path, body in (
        ("GET", "Document", None),
        ("GET", f"Document/{document}", None),
        ("SEARCH", "Document", {}),
        ("POST", "Document/search", {}),
        ("POST", "Document", {"title": "x"}),
        ("POST", "Company", {"name": "x"}),
        ("PATCH", f"Company/{company}", {"name": "x"}),
        ("DELETE", f"Company/{company}", None),
    ):
        response = await _send(api, reporter, method, path, body)
        assert response.status_code == 403, f"reporter {method} {path}: {response.text}"
    for method, path in (("GET", "Company"), ("GET", f"Company/{company}"), ("GET", "Deal")):
        response = await _send(api, nobody, method, path)
        assert response.status_code == 403, f"nobody {method} {path}: {response.text}"
    assert (await _send(api, integ, "DELETE", f"Company/{company}")).status_code == 403
    anonymous = await api.client.get(f"{COLLECTIONS}/Company")
    assert anonymous.status_code == 401
    assert (await _send(api, reporter, "GET", "SyncCursor")).status_code == 404
    assert (await _send(api, admin, "GET", f"Company/{company}")).status_code == 200


async def test_document_read_scope_and_read_only_field(api: Api) -> None:
    admin = api.admin_key
    integ = await _user(api, "ivan", "integration")
    secret = await _create(api, admin, "Document", {"title": "Secret", "confidential": True})
    public = await _create(api, admin, "Document", {"title": "Public", "confidential": False})
    unset = await _create(api, admin, "Document", {"title": "Unset"})
    assert await _ids(api, integ, "Document") == {public, unset}
    assert (await _send(api, integ, "GET", f"Document/{secret}")).status_code == 404
    assert await _ids(api, integ, "Document", _filter="confidential = true") == set()

    refused = await _send(api, integ, "POST", "Document", {"title": "Mine", "confidential": False})
    assert refused.status_code == 422
    assert _errors(refused) == {"confidential"}
    allowed = await _send(api, integ, "POST", "Document", {"title": "Mine"})
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["data"]["confidential"] is None


# --- the permission-matrix tenant ---------------------------------------------------


@pytest.fixture
async def matrix(backend: Backend, cache_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(
        backend, cache_url, tmp_path / "data", tenant_file=TENANTS / "permissions.toml"
    )
    async for started in start_api(settings):
        yield started


async def _matrix_seed(api: Api) -> dict[str, int]:
    admin = api.admin_key
    ids = {
        "gold": await _create(
            api, admin, "Account", {"name": "Gold", "tier": "gold", "secret": "g"}
        ),
        "silver": await _create(
            api, admin, "Account", {"name": "Silver", "tier": "silver", "secret": "s"}
        ),
        "vault": await _create(api, admin, "Vault", {"label": "V"}),
    }
    ids["low"] = await _create(api, admin, "Ticket", {"subject": "Low", "priority": 1})
    ids["high"] = await _create(api, admin, "Ticket", {"subject": "High", "priority": 9})
    ids["locked"] = await _create(
        api, admin, "Ticket", {"subject": "Locked", "priority": 2, "locked": True}
    )
    ids["gold_ticket"] = await _create(
        api,
        admin,
        "Ticket",
        {
            "subject": "Gold's",
            "priority": 3,
            "account": ids["gold"],
            "watchers": [ids["gold"]],
            "vault": ids["vault"],
        },
    )
    ids["silver_ticket"] = await _create(
        api,
        admin,
        "Ticket",
        {"subject": "Silver's", "account": ids["silver"], "watchers": [ids["silver"]]},
    )
    return ids


async def test_writes_outside_the_read_scope_are_404_and_outside_the_right_403(
    matrix: Api,
) -> None:
    api = matrix
    ids = await _matrix_seed(api)
    agent = await _user(api, "ann", "agent")

    for method, body in (("GET", None), ("PATCH", {"subject": "x"}), ("DELETE", None)):
        response = await _send(api, agent, method, f"Ticket/{ids['high']}", body)
        assert response.status_code == 404, f"{method}: {response.text}"
    put = await _send(api, agent, "PUT", f"Ticket/{ids['high']}", {"subject": "x"})
    assert put.status_code == 404
    locked = await _send(api, agent, "PATCH", f"Ticket/{ids['locked']}", {"subject": "x"})
    assert locked.status_code == 403
    not_own = await _send(api, agent, "DELETE", f"Ticket/{ids['low']}")
    assert not_own.status_code == 403
    assert (
        await _send(api, agent, "PATCH", f"Ticket/{ids['low']}", {"subject": "y"})
    ).status_code == 200

    outside = await _send(api, agent, "POST", "Ticket", {"subject": "Urgent", "priority": 7})
    assert outside.status_code == 403
    mine = await _create(api, agent, "Ticket", {"subject": "Mine", "priority": 4})
    assert (await _send(api, agent, "DELETE", f"Ticket/{mine}")).status_code == 204
    tickets = await _ids(api, api.admin_key, "Ticket")
    assert tickets == {
        ids[n] for n in ("low", "high", "locked", "gold_ticket", "silver_ticket")
    }  # nothing outside the create scope was stored

    for method, path in (
        ("POST", "Ticket"),
        ("PATCH", f"Ticket/{ids['low']}"),
        ("PUT", f"Ticket/{ids['low']}"),
    ):
        response = await _send(api, agent, method, path, {"subject": "x", "locked": False})
        assert response.status_code == 422, response.text
        assert _errors(response) == {"locked"}
    # A replace leaves the read-only field as it was.
    unlocked = await _send(api, api.admin_key, "PATCH", f"Ticket/{ids['low']}", {"locked": False})
    assert unlocked.status_code == 200
    replaced = await _send(api, agent, "PUT", f"Ticket/{ids['low']}", {"subject": "z"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["data"]["priority"] is None
    assert replaced.json()["data"]["locked"] is False


async def test_references_and_paths_respect_the_referenced_types_rights(matrix: Api) -> None:
    api = matrix
    ids = await _matrix_seed(api)
    agent = await _user(api, "ann", "agent")

    assert await _ids(api, agent, "Account") == {ids["silver"]}
    account = (await _send(api, agent, "GET", f"Account/{ids['silver']}")).json()["data"]
    assert "secret" not in account

    # A reference to a record the caller cannot read is refused like a missing one.
    for body, field in (
        ({"subject": "x", "account": ids["gold"]}, "account"),
        ({"subject": "x", "watchers": [ids["silver"], ids["gold"]]}, "watchers"),
        ({"subject": "x", "account": 999999}, "account"),
    ):
        response = await _send(api, agent, "POST", "Ticket", body)
        assert response.status_code == 422, f"{body}: {response.text}"
        assert _errors(response) == {field}
    patched = await _send(api, agent, "PATCH", f"Ticket/{ids['low']}", {"account": ids["gold"]})
    assert patched.status_code == 422
    created = await _send(api, agent, "POST", "Ticket", {"subject": "ok", "account": ids["silver"]})
    assert created.status_code == 201, created.text

    # Paths only see referenced records the caller may read.
    assert await _ids(api, agent, "Ticket", _filter="account.name = 'Gold'") == set()
    assert await _ids(api, agent, "Ticket", _filter="watchers.name = 'Gold'") == set()
    assert await _ids(api, agent, "Ticket", _filter="account.name = 'Silver'") == {
        ids["silver_ticket"],
        created.json()["data"]["id"],
    }
    admin_view = await _ids(api, api.admin_key, "Ticket", _filter="account.name = 'Gold'")
    assert admin_view == {ids["gold_ticket"]}

    for text in (
        "account.secret = 's'",
        "watchers.secret ~ 's'",
        "not account.secret is null",
        "vault.label = 'V'",
        "vault.id >= 1",
    ):
        response = await api.client.get(
            f"{COLLECTIONS}/Ticket", params={"_filter": text}, headers=api.auth(agent)
        )
        assert response.status_code == 422, f"{text}: {response.text}"
        admin_response = await api.client.get(
            f"{COLLECTIONS}/Ticket", params={"_filter": text}, headers=api.auth(api.admin_key)
        )
        assert admin_response.status_code == 200, f"{text}: {admin_response.text}"
    assert (await _send(api, agent, "GET", "Vault")).status_code == 403
