"""GraphQL on the shared resolver layer (issue 7), on both backends and a real Valkey.

Each scenario runs the same request over GraphQL and REST and compares the results
field for field: lists with where/filter/order/paging/count, get by id and by a unique
property, writes, time and decimal values, hidden fields, row scopes. Then what is
GraphQL's own: error extensions, authentication at the edge, one cache entry shared
with REST's SEARCH, writes that refresh REST reads, references loaded in a bounded
number of SQL statements, ETag/304 over GET, keys and account challenges, masking.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from httpx import Response

from gateway.settings import DEMO_TENANT_FILE, Settings
from resolvers.principal import UserState, build_principal
from resolvers.services import Services
from resolvers.tenant import load_tenant, parse_tenant
from schema.build import build_schema
from schema.context import GraphQLContext
from tests.conftest import (
    RECORD_TABLES,
    TENANTS,
    Api,
    Backend,
    make_settings,
    start_api,
    statements_on,
)
from tests.integration.test_accounts import outbox_texts

GRAPHQL = "/graphql"
COLLECTIONS = "/api/v1/collections"
AUDIT = "/api/v1/admin/audit"
NO_CACHE = {"Cache-Control": "no-cache"}

COMPANY = "id created_on updated_on created_by updated_by name registration_no website "
COMPANY += "industry employees annual_revenue tags"
CONTACT = "id created_on updated_on created_by updated_by full_name email phone birthday "
CONTACT += "newsletter notes company { id }"
DEAL = "id created_on updated_on created_by updated_by title status amount expected_close "
DEAL += "closed_on company { id } contacts { id }"
"""Every Deal field but `margin_percent`, which the integration and reporter roles hide."""
DEAL_ALL = f"{DEAL} margin_percent"

running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)


# --- helpers ------------------------------------------------------------------------


async def _gql(
    api: Api,
    key: str,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return await api.client.post(GRAPHQL, json=body, headers={**api.auth(key), **(headers or {})})


def _data(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def _query(
    api: Api, key: str, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    return _data(await _gql(api, key, query, variables))


def _errors(response: Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    errors: list[dict[str, Any]] = response.json()["errors"]
    return errors


def _error(response: Response) -> dict[str, Any]:
    """The one error of a response."""
    errors = _errors(response)
    assert len(errors) == 1, errors
    return errors[0]


async def _rest(api: Api, key: str, path: str, **params: str | int) -> Response:
    return await api.client.get(
        f"{COLLECTIONS}/{path}", params=params or None, headers=api.auth(key)
    )


async def _rest_data(api: Api, key: str, path: str, **params: str | int) -> Any:
    response = await _rest(api, key, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


async def _create(api: Api, type_name: str, body: dict[str, Any], key: str = "") -> int:
    response = await api.client.post(
        f"{COLLECTIONS}/{type_name}", json=body, headers=api.auth(key or api.admin_key)
    )
    assert response.status_code == 201, response.text
    record_id: int = response.json()["data"]["id"]
    return record_id


async def _user(api: Api, login: str, *roles: str, **fields: object) -> tuple[int, str]:
    user_id = await api.create_user(login, roles=list(roles), **fields)
    return user_id, await api.login(login)


def _flat(value: Any) -> Any:
    """A GraphQL record as REST renders it: a reference `{id}` is its id."""
    if isinstance(value, dict):
        if set(value) == {"id"}:
            return value["id"]
        return {k: _flat(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_flat(v) for v in value]
    return value


async def _seed_deals(api: Api) -> dict[str, int]:
    """Three companies, three contacts and six deals of the demo tenant."""
    ids = {
        "acme": await _create(
            api, "Company", {"name": "Acme", "registration_no": "AC-1", "employees": 50}
        ),
        "apex": await _create(api, "Company", {"name": "Apex", "employees": 5, "tags": ["x"]}),
        "zeta": await _create(api, "Company", {"name": "Zeta", "employees": 500}),
    }
    for name, company in (("ann", "acme"), ("bob", "acme"), ("cid", "zeta")):
        ids[name] = await _create(
            api,
            "Contact",
            {"full_name": name.title(), "email": f"{name}@example.com", "company": ids[company]},
        )
    deals = [
        ("One", "acme", "open", "100.00", "2026-05", "2026-05-22T09:00:00+02:00", ["ann"]),
        ("Two", "acme", "won", "250.50", "2026-06", None, ["ann", "bob"]),
        ("Three", "apex", "open", "990.00", None, "2026-05-22 23:30:00", []),
        ("Four", "apex", "lost", "5.00", "2026-07", None, ["cid"]),
        ("Five", "zeta", "won", None, "2026-05", "2026-01-01T00:00:00Z", ["bob"]),
        ("Six", "acme", "open", "400.00", None, None, []),
    ]
    for title, company, status, amount, month, closed, contacts in deals:
        ids[title] = await _create(
            api,
            "Deal",
            {
                "title": title,
                "company": ids[company],
                "status": status,
                "amount": amount,
                "expected_close": month,
                "closed_on": closed,
                "contacts": [ids[c] for c in contacts],
                "margin_percent": "12.50",
            },
        )
    return ids


# --- reads compared with REST ---------------------------------------------------------


async def test_lists_match_rest_field_for_field(api: Api) -> None:
    await _seed_deals(api)
    key = api.admin_key
    query = f"""query($after: String) {{
      deals(
        where: {{and: [{{amount: {{gte: "100"}}}}, {{status: {{in: [open, won]}}}}],
                 company: {{name: {{startswith: "a"}}}}}},
        order: [{{field: amount, desc: true}}], limit: 2, count: true, after: $after
      ) {{ items {{ {DEAL_ALL} }} total next }}
    }}"""
    rest_params: dict[str, str | int] = {
        "_filter": "amount >= 100 and status in ('open','won') and company.name ^= 'a'",
        "_order": "-amount",
        "_limit": 2,
        "_count": 1,
    }
    first = (await _query(api, key, query))["deals"]
    rest = await _rest_data(api, key, "Deal", **rest_params)
    assert [d["title"] for d in first["items"]] == ["Three", "Six"]
    assert _flat(first["items"]) == rest["data"]
    assert first["total"] == rest["meta"]["total"] == 4
    assert first["next"] == rest["meta"]["next"]
    second = (await _query(api, key, query, {"after": first["next"]}))["deals"]
    rest_second = await _rest_data(api, key, "Deal", **rest_params, _after=rest["meta"]["next"])
    assert _flat(second["items"]) == rest_second["data"]
    assert [d["title"] for d in second["items"]] == ["Two", "One"]
    assert second["next"] is None
    assert "next" not in rest_second["meta"]

    # `filter` (the text form) and `where` together: both hold.
    both = await _query(
        api,
        key,
        f'{{ deals(where: {{status: {{eq: open}}}}, filter: "amount < 500", '
        f"order: [{{field: title}}]) {{ items {{ {DEAL_ALL} }} }} }}",
    )
    rest_both = await _rest_data(
        api, key, "Deal", _filter="status = 'open' and amount < 500", _order="title"
    )
    assert _flat(both["deals"]["items"]) == rest_both["data"]
    assert [d["title"] for d in rest_both["data"]] == ["One", "Six"]

    # Offsets, `or`/`not`, multi-valued references through dotted paths, nulls.
    paged = await _query(
        api,
        key,
        f"""{{ deals(
              where: {{or: [{{contacts: {{full_name: {{eq: "Bob"}}}}}},
                            {{not: {{expected_close: {{isnull: false}}}}}}]}},
              order: [{{field: expected_close}}, {{field: title, desc: true}}],
              limit: 2, offset: 1) {{ items {{ {DEAL_ALL} }} total }} }}""",
    )
    rest_paged = await _rest_data(
        api,
        key,
        "Deal",
        _filter="contacts.full_name = 'Bob' or not expected_close is not null",
        _order="expected_close,-title",
        _limit=2,
        _offset=1,
    )
    assert _flat(paged["deals"]["items"]) == rest_paged["data"]
    assert paged["deals"]["total"] is None


async def test_time_and_decimals_follow_the_callers_zone_as_over_rest(api: Api) -> None:
    await _seed_deals(api)
    _, nina = await _user(api, "nina", "integration", timezone="America/New_York")
    created = await _query(
        api,
        nina,
        f"""mutation {{ createDeal(data: {{
              title: "Zoned", company: {await _create(api, "Company", {"name": "Zed"})},
              status: open, amount: "1234.5", expected_close: "2026-05-31",
              closed_on: "2026-05-22T09:00:00"}}) {{ {DEAL} }} }}""",
    )
    deal = created["createDeal"]
    # Naive input is read in the caller's zone and rendered with its offset.
    assert deal["closed_on"] == "2026-05-22T09:00:00-04:00"
    assert (deal["amount"], deal["expected_close"]) == ("1234.50", "2026-05")
    rest = await _rest_data(api, nina, f"Deal/{deal['id']}")
    assert _flat(deal) == rest["data"]
    as_admin = await _query(api, api.admin_key, f"{{ deal(id: {deal['id']}) {{ closed_on }} }}")
    assert as_admin["deal"]["closed_on"] == "2026-05-22T15:00:00+02:00"

    # Filter values follow the same rules: naive in the caller's zone, offsets as given.
    for literal in ("2026-05-22 09:00:00", "2026-05-22T13:00:00Z"):
        found = await _query(
            api,
            nina,
            f'{{ deals(where: {{closed_on: {{eq: "{literal}"}}}}) {{ items {{ {DEAL} }} }} }}',
        )
        rest_found = await _rest_data(api, nina, "Deal", _filter=f"closed_on = '{literal}'")
        assert _flat(found["deals"]["items"]) == rest_found["data"]
        assert [d["title"] for d in rest_found["data"]] == ["Zoned"]
    months = await _query(
        api,
        nina,
        f'{{ deals(where: {{expected_close: {{eq: "2026-05"}}}}, order: [{{field: title}}]) '
        f"{{ items {{ {DEAL} }} }} }}",
    )
    rest_months = await _rest_data(
        api, nina, "Deal", _filter="expected_close = 2026-05", _order="title"
    )
    assert _flat(months["deals"]["items"]) == rest_months["data"]
    assert [d["title"] for d in rest_months["data"]] == ["Five", "One", "Zoned"]


async def test_get_by_id_and_by_unique_property_match_rest(api: Api) -> None:
    ids = await _seed_deals(api)
    key = api.admin_key
    found = await _query(
        api,
        key,
        f"""{{ company(id: {ids["acme"]}) {{ {COMPANY} }}
              companyByRegistrationNo(value: "AC-1") {{ {COMPANY} }}
              contactByEmail(value: "ann@EXAMPLE.com") {{ {CONTACT} }}
              deal(id: {ids["Two"]}) {{ {DEAL} margin_percent }}
              missing: company(id: 999999) {{ id }}
              missingBy: contactByEmail(value: "nobody@example.com") {{ id }} }}""",
    )
    assert found["company"] == (await _rest_data(api, key, f"Company/{ids['acme']}"))["data"]
    by_rest = await _rest_data(api, key, "Company/by/registration_no/AC-1")
    assert found["companyByRegistrationNo"] == by_rest["data"]
    contact = await _rest_data(api, key, "Contact/by/email/ann@EXAMPLE.com")
    assert _flat(found["contactByEmail"]) == contact["data"]
    assert _flat(found["deal"]) == (await _rest_data(api, key, f"Deal/{ids['Two']}"))["data"]
    assert found["missing"] is None
    assert found["missingBy"] is None
    # The nested objects are the referenced records as the caller may read them.
    nested = await _query(
        api, key, f"{{ deal(id: {ids['Two']}) {{ company {{ {COMPANY} }} contacts {{ email }} }} }}"
    )
    assert nested["deal"]["company"] == found["company"]
    assert nested["deal"]["contacts"] == [
        {"email": "ann@example.com"},
        {"email": "bob@example.com"},
    ]


async def test_enums_take_graphql_names_for_the_tenants_values(api: Api) -> None:
    created = await _query(
        api,
        api.admin_key,
        'mutation { createCompany(data: {name: "Gov", industry: public_sector}) { id industry } }',
    )
    company = created["createCompany"]
    assert company["industry"] == "public_sector"
    rest = await _rest_data(api, api.admin_key, f"Company/{company['id']}")
    assert rest["data"]["industry"] == "public sector"
    found = await _query(
        api, api.admin_key, "{ companies(where: {industry: {eq: public_sector}}) { items { id } } }"
    )
    assert found["companies"]["items"] == [{"id": company["id"]}]


# --- writes ---------------------------------------------------------------------------


async def test_create_update_replace_delete_round_trip_with_rest(api: Api) -> None:
    key = api.admin_key
    company = await _create(api, "Company", {"name": "Acme"})
    created = await _query(
        api,
        key,
        f"""mutation($data: ContactInput!) {{ createContact(data: $data) {{ {CONTACT} }} }}""",
        {
            "data": {
                "full_name": "Ann",
                "email": "ann@example.com",
                "phone": "+420 601 123 456",
                "birthday": "1990-02-03",
                "newsletter": False,
                "notes": "first",
                "company": company,
            }
        },
    )
    contact = created["createContact"]
    contact_id = contact["id"]
    assert (contact["phone"], contact["company"]) == ("+420601123456", {"id": company})
    assert _flat(contact) == (await _rest_data(api, key, f"Contact/{contact_id}"))["data"]

    # A patch changes what it names: null clears, absence keeps.
    updated = await _query(
        api,
        key,
        f"mutation {{ updateContact(id: {contact_id}, data: {{notes: null, newsletter: true}}) "
        f"{{ {CONTACT} }} }}",
    )
    patched = updated["updateContact"]
    assert (patched["full_name"], patched["notes"], patched["newsletter"]) == ("Ann", None, True)
    assert _flat(patched) == (await _rest_data(api, key, f"Contact/{contact_id}"))["data"]

    # A replace clears every writable field it does not name.
    replaced = await _query(
        api,
        key,
        f'mutation {{ replaceContact(id: {contact_id}, data: {{full_name: "Anna"}}) '
        f"{{ {CONTACT} }} }}",
    )
    whole = replaced["replaceContact"]
    assert (whole["full_name"], whole["email"], whole["company"]) == ("Anna", None, None)
    assert _flat(whole) == (await _rest_data(api, key, f"Contact/{contact_id}"))["data"]

    deleted = await _query(api, key, f"mutation {{ deleteContact(id: {contact_id}) }}")
    assert deleted == {"deleteContact": True}
    assert (await _rest(api, key, f"Contact/{contact_id}")).status_code == 404
    assert (await _query(api, key, f"{{ contact(id: {contact_id}) {{ id }} }}")) == {
        "contact": None
    }


async def test_errors_carry_the_gateways_codes(api: Api) -> None:
    admin = api.admin_key
    _, rita = await _user(api, "rita", "reporter")
    await _create(api, "Company", {"name": "Acme", "registration_no": "AC-1"})

    invalid = _error(
        await _gql(
            api,
            admin,
            'mutation { createContact(data: {full_name: "X", email: "not-mail"}) { id } }',
        )
    )
    assert invalid["message"] == "the Contact is not valid"
    assert invalid["path"] == ["createContact"]
    assert invalid["extensions"]["code"] == "invalid"
    assert [e["field"] for e in invalid["extensions"]["errors"]] == ["email"]

    missing = _error(
        await _gql(api, admin, 'mutation { updateContact(id: 999999, data: {notes: "x"}) { id } }')
    )
    assert missing["extensions"] == {"code": "not_found"}
    assert missing["message"] == "no Contact with id 999999"

    refused = _error(
        await _gql(api, rita, 'mutation { createCompany(data: {name: "Mine"}) { id } }')
    )
    assert refused["extensions"] == {"code": "forbidden"}

    taken = _error(
        await _gql(
            api,
            admin,
            'mutation { createCompany(data: {name: "Copy", registration_no: "AC-1"}) { id } }',
        )
    )
    assert taken["extensions"]["code"] == "conflict"
    assert [e["field"] for e in taken["extensions"]["errors"]] == ["registration_no"]

    # Request values are checked as REST checks them: a bad text filter, a page too large.
    bad_filter = _error(await _gql(api, admin, '{ companies(filter: "name ==") { total } }'))
    assert bad_filter["extensions"]["code"] == "invalid"
    assert bad_filter["extensions"]["errors"][0]["field"].startswith("filter (position ")
    too_many = _error(await _gql(api, admin, "{ companies(limit: 5000) { total } }"))
    assert too_many["extensions"]["errors"] == [
        {"field": "limit", "message": "a whole number from 1 to 1000"}
    ]
    bad_key = _error(await _gql(api, admin, '{ contactByEmail(value: "not-mail") { id } }'))
    assert bad_key["extensions"]["code"] == "invalid"

    # GraphQL's own errors pass unmasked, without a gateway code.
    unknown = _error(await _gql(api, admin, "{ companies { nope } }"))
    assert "nope" in unknown["message"]
    assert "code" not in unknown.get("extensions", {})


async def test_hidden_fields_are_errors_naming_the_field(api: Api) -> None:
    ids = await _seed_deals(api)
    _, rita = await _user(api, "rita", "reporter")
    response = await _gql(api, rita, f"{{ contact(id: {ids['ann']}) {{ id full_name phone }} }}")
    error = _error(response)
    assert error["extensions"] == {"code": "forbidden"}
    assert "'phone'" in error["message"]
    assert error["path"] == ["contact", "phone"]
    assert response.json()["data"] == {
        "contact": {"id": ids["ann"], "full_name": "Ann", "phone": None}
    }

    # In a list, through a reference too; the visible fields still come.
    listed = await _gql(
        api,
        rita,
        "{ deals(order: [{field: title}], limit: 1) { items { title margin_percent "
        "contacts { birthday } } } }",
    )
    errors = _errors(listed)
    assert {e["extensions"]["code"] for e in errors} == {"forbidden"}
    assert {e["path"][-1] for e in errors} == {"margin_percent", "birthday"}
    assert listed.json()["data"]["deals"]["items"][0]["title"] == "Five"

    # Filtering or ordering on one is refused as over REST; the rest reads as over REST.
    filtered = _error(await _gql(api, rita, '{ contacts(where: {phone: {eq: "1234"}}) { total } }'))
    assert filtered["extensions"]["code"] == "invalid"
    visible = await _query(
        api,
        rita,
        "{ contacts(order: [{field: full_name}]) { items { id created_on updated_on "
        "created_by updated_by full_name email newsletter company { id } } } }",
    )
    rest = await _rest_data(api, rita, "Contact", _order="full_name")
    assert _flat(visible["contacts"]["items"]) == rest["data"]


async def test_row_scopes_apply_as_over_rest(api: Api) -> None:
    _, rita = await _user(api, "rita", "reporter")
    _, ivan = await _user(api, "ivan", "integration")
    done = await _create(api, "Activity", {"subject": "Done", "kind": "call", "done": True})
    open_ = await _create(api, "Activity", {"subject": "Open", "kind": "call", "done": False})
    for confidential in (True, False, None):
        await _create(api, "Document", {"title": str(confidential), "confidential": confidential})

    activities = await _query(
        api,
        rita,
        f"{{ activities {{ items {{ id subject }} }} hidden: activity(id: {open_}) "
        f"{{ id }} shown: activity(id: {done}) {{ subject }} }}",
    )
    assert activities["activities"]["items"] == [{"id": done, "subject": "Done"}]
    assert activities["hidden"] is None
    assert activities["shown"] == {"subject": "Done"}

    fields = "id created_on updated_on created_by updated_by title confidential deal { id } "
    fields += "file { name size content_type sha256 url }"
    documents = await _query(
        api, ivan, f"{{ documents(order: [{{field: title}}]) {{ items {{ {fields} }} }} }}"
    )
    rest = await _rest_data(api, ivan, "Document", _order="title")
    assert _flat(documents["documents"]["items"]) == rest["data"]
    assert [d["title"] for d in rest["data"]] == ["False", "None"]

    # A write outside the caller's read scope answers the bare id, as REST does.
    written = await _query(
        api,
        ivan,
        'mutation { createDocument(data: {title: "Mine"}) { id title } }',
    )
    assert written["createDocument"]["title"] == "Mine"
    refused = _error(
        await _gql(
            api,
            ivan,
            f'mutation {{ updateActivity(id: {done}, data: {{subject: "x"}}) {{ id }} }}',
        )
    )
    assert refused["extensions"]["code"] == "forbidden"


@pytest.fixture
async def matrix(backend: Backend, cache_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The app on `tests/tenants/permissions.toml` (references out of the read scope)."""
    settings = make_settings(
        backend, cache_url, tmp_path / "data", tenant_file=TENANTS / "permissions.toml"
    )
    async for started in start_api(settings):
        yield started


async def test_references_out_of_the_read_scope_are_null(matrix: Api) -> None:
    api = matrix
    gold = await _create(api, "Account", {"name": "Gold", "tier": "gold", "secret": "g"})
    silver = await _create(api, "Account", {"name": "Silver", "tier": "silver", "secret": "s"})
    vault = await _create(api, "Vault", {"label": "V"})
    ticket = await _create(
        api,
        "Ticket",
        {"subject": "T", "account": gold, "watchers": [silver, gold], "vault": vault},
    )
    _, agent = await _user(api, "agent", "agent")
    found = await _query(
        api,
        agent,
        f"{{ ticket(id: {ticket}) {{ account {{ name }} watchers {{ name }} vault {{ label }} }} "
        "tickets { items { watchers { id tier } } } }",
    )
    # A record outside the scope, and a type the caller cannot read at all, are null.
    assert found["ticket"] == {
        "account": None,
        "watchers": [{"name": "Silver"}, None],
        "vault": None,
    }
    assert found["tickets"]["items"] == [{"watchers": [{"id": silver, "tier": "silver"}, None]}]
    # REST shows the ids as stored; GraphQL the records the caller may read.
    rest = await _rest_data(api, agent, f"Ticket/{ticket}")
    assert (rest["data"]["account"], rest["data"]["watchers"]) == (gold, [silver, gold])
    # A field hidden behind a reference is refused like any hidden field.
    hidden = _error(
        await _gql(api, agent, f"{{ ticket(id: {ticket}) {{ watchers {{ secret }} }} }}")
    )
    assert hidden["extensions"] == {"code": "forbidden"}
    assert hidden["path"] == ["ticket", "watchers", 0, "secret"]


@pytest.fixture
async def library(backend: Backend, cache_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The app on `tests/tenants/library.toml` (the `compact` multiple-value shape)."""
    settings = make_settings(
        backend, cache_url, tmp_path / "data", tenant_file=TENANTS / "library.toml"
    )
    async for started in start_api(settings):
        yield started


async def test_multi_valued_fields_are_lists_in_the_compact_shape(library: Api) -> None:
    api = library
    ann = await _create(api, "Author", {"name": "Ann"})
    bob = await _create(api, "Author", {"name": "Bob"})
    for title, authors in (("A none", []), ("B one", [ann]), ("C two", [ann, bob])):
        await _create(api, "Book", {"title": title, "authors": authors, "genre": "non-fiction"})
    rest = await _rest_data(api, api.admin_key, "Book", _order="title")
    assert [b["authors"] for b in rest["data"]] == [None, ann, [ann, bob]]
    found = await _query(
        api,
        api.admin_key,
        "{ books(order: [{field: title}]) { items { authors { name } genre } } }",
    )
    assert found["books"]["items"] == [
        {"authors": [], "genre": "non_fiction"},
        {"authors": [{"name": "Ann"}], "genre": "non_fiction"},
        {"authors": [{"name": "Ann"}, {"name": "Bob"}], "genre": "non_fiction"},
    ]


# --- the HTTP edge ----------------------------------------------------------------------


async def test_authentication_is_the_same_as_rests(api: Api) -> None:
    query = {"query": "{ companies { total } }"}
    for headers in ({}, {"Authorization": "Bearer jgw_nope_nope"}, {"X-API-Key": "garbage"}):
        response = await api.client.post(GRAPHQL, json=query, headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["vary"] == "Authorization, X-API-Key"
    by_header = await api.client.post(GRAPHQL, json=query, headers={"X-API-Key": api.admin_key})
    assert _data(by_header) == {"companies": {"total": None}}
    in_query = await api.client.get(
        GRAPHQL, params={"query": "{ companies { total } }", "api_key": api.admin_key}
    )
    assert in_query.status_code == 400, in_query.text
    assert in_query.headers["content-type"] == "application/problem+json"


async def test_a_graphql_list_and_the_equivalent_rest_search_share_one_entry(api: Api) -> None:
    await _seed_deals(api)
    key = api.admin_key
    counters = api.app_services.cache.counters
    graphql_first = await _gql(
        api,
        key,
        f"""{{ deals(where: {{amount: {{gte: "100"}}, status: {{in: [open, won]}}}},
               order: [{{field: title}}], limit: 3, count: true) {{ items {{ {DEAL_ALL} }}
               total next }} }}""",
    )
    assert graphql_first.headers["x-cache"] == "MISS"
    before = dict(counters)
    search = await api.client.post(
        f"{COLLECTIONS}/Deal/search",
        json={
            "filter": {"status": {"in": ["won", "open"]}, "amount": {"gte": 100}},
            "order": ["title"],
            "limit": 3,
            "count": True,
        },
        headers=api.auth(key),
    )
    assert search.status_code == 200, search.text
    assert search.headers["x-cache"] == "HIT"
    assert counters["HIT"] == before["HIT"] + 1
    assert counters["MISS"] == before["MISS"]
    page = _data(graphql_first)["deals"]
    assert _flat(page["items"]) == search.json()["data"]
    assert (page["total"], page["next"]) == (
        search.json()["meta"]["total"],
        search.json()["meta"]["next"],
    )

    # The other way round: REST first, then GraphQL is served from its entry.
    rest_first = await _rest(api, key, "Company", _filter="employees >= 10", _order="-name")
    assert rest_first.headers["x-cache"] == "MISS"
    graphql_second = await _gql(
        api,
        key,
        f"{{ companies(where: {{employees: {{gte: 10}}}}, order: [{{field: name, desc: true}}]) "
        f"{{ items {{ {COMPANY} }} }} }}",
    )
    assert graphql_second.headers["x-cache"] == "HIT"
    assert _data(graphql_second)["companies"]["items"] == rest_first.json()["data"]
    # `noCache` (or `Cache-Control: no-cache`) bypasses, as `_noCache=1` does.
    bypassed = await _gql(api, key, "{ companies(noCache: true) { total } }")
    assert bypassed.headers["x-cache"] == "BYPASS"
    bypassed = await _gql(api, key, "{ companies { total } }", headers=NO_CACHE)
    assert bypassed.headers["x-cache"] == "BYPASS"


async def test_a_graphql_write_makes_rest_reads_fresh(api: Api) -> None:
    key = api.admin_key
    company = await _create(api, "Company", {"name": "Old"})
    for expected in ("MISS", "HIT"):
        assert (await _rest(api, key, f"Company/{company}")).headers["x-cache"] == expected
        assert (await _rest(api, key, "Company")).headers["x-cache"] == expected
    await _query(
        api, key, f'mutation {{ updateCompany(id: {company}, data: {{name: "New"}}) {{ id }} }}'
    )
    one = await _rest(api, key, f"Company/{company}")
    assert (one.headers["x-cache"], one.json()["data"]["name"]) == ("MISS", "New")
    listed = await _rest(api, key, "Company")
    assert (listed.headers["x-cache"], listed.json()["data"][0]["name"]) == ("MISS", "New")

    # And a REST write refreshes the GraphQL read of the same entry.
    read = "{ company(id: %d) { name } }" % company  # noqa: UP031 - braces of GraphQL
    assert (await _gql(api, key, read)).headers["x-cache"] == "HIT"
    patched = await api.client.patch(
        f"{COLLECTIONS}/Company/{company}", json={"name": "Newer"}, headers=api.auth(key)
    )
    assert patched.status_code == 200, patched.text
    again = await _gql(api, key, read)
    assert (again.headers["x-cache"], _data(again)["company"]["name"]) == ("MISS", "Newer")


async def test_references_load_in_a_bounded_number_of_statements(api: Api) -> None:
    key = api.admin_key
    companies = " ".join(
        f'c{i}: createCompany(data: {{name: "Company {i}", tags: ["t{i}"]}}) {{ id }}'
        for i in range(10)
    )
    made = await _query(api, key, f"mutation {{ {companies} }}")
    company_ids = [made[f"c{i}"]["id"] for i in range(10)]
    for start in range(0, 100, 25):  # 25 aliases a request: under the alias limit
        contacts = " ".join(
            f'p{i}: createContact(data: {{full_name: "P{i:03}", company: {company_ids[i % 10]}}}) '
            "{ id }"
            for i in range(start, start + 25)
        )
        await _query(api, key, f"mutation {{ {contacts} }}")

    query = (
        "{ contacts(limit: 100, order: [{field: full_name}]) "
        "{ items { full_name company { id name tags } } } }"
    )
    with statements_on(api.app_services, RECORD_TABLES) as seen:
        response = await _gql(api, key, query, headers=NO_CACHE)
    items = _data(response)["contacts"]["items"]
    assert len(items) == 100
    for i, item in enumerate(items):
        assert item["company"] == {
            "id": company_ids[i % 10],
            "name": f"Company {i % 10}",
            "tags": [f"t{i % 10}"],
        }
    # The contacts page, then ONE list read of their companies (and its tags).
    assert len(seen) <= 4, seen


async def test_get_queries_revalidate_with_etags(api: Api) -> None:
    key = api.admin_key
    company = await _create(api, "Company", {"name": "Acme"})
    params = {"query": "{ companies { items { id name } } }"}
    first = await api.client.get(GRAPHQL, params=params, headers=api.auth(key))
    assert _data(first) == {"companies": {"items": [{"id": company, "name": "Acme"}]}}
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.headers["vary"] == "Authorization, X-API-Key"
    etag = first.headers["etag"]
    second = await api.client.get(GRAPHQL, params=params, headers=api.auth(key))
    assert (second.headers["x-cache"], second.headers["etag"]) == ("HIT", etag)
    revalidated = await api.client.get(
        GRAPHQL, params=params, headers={**api.auth(key), "If-None-Match": etag}
    )
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    assert revalidated.headers["etag"] == etag

    # Another user's ETag differs for the same body; a write changes the body.
    _, rita = await _user(api, "rita", "reporter")
    theirs = await api.client.get(GRAPHQL, params=params, headers=api.auth(rita))
    assert theirs.text == first.text
    assert theirs.headers["etag"] != etag
    await _query(
        api, key, f'mutation {{ updateCompany(id: {company}, data: {{name: "Apex"}}) {{ id }} }}'
    )
    changed = await api.client.get(
        GRAPHQL, params=params, headers={**api.auth(key), "If-None-Match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag

    # POST answers are never stored; an answer with errors has no ETag.
    posted = await _gql(api, key, params["query"])
    assert posted.headers["cache-control"] == "no-store"
    assert "etag" not in posted.headers
    assert posted.headers["x-cache"] == "HIT"
    failing = await api.client.get(
        GRAPHQL, params={"query": "{ companies(limit: 0) { total } }"}, headers=api.auth(key)
    )
    assert _errors(failing)
    assert "etag" not in failing.headers
    assert failing.headers["cache-control"] == "no-store"


async def test_mutations_over_get_are_refused(api: Api) -> None:
    response = await api.client.get(
        GRAPHQL,
        params={"query": 'mutation { createCompany(data: {name: "X"}) { id } }'},
        headers=api.auth(api.admin_key),
    )
    assert response.status_code in {400, 405}, response.text
    rest = await _rest_data(api, api.admin_key, "Company")
    assert rest["data"] == []


async def test_audited_single_reads_leave_a_graphql_row(api: Api) -> None:
    call = await _create(api, "Activity", {"subject": "Call", "kind": "call", "done": True})
    ivan_id, ivan = await _user(api, "ivan", "integration")
    response = await _gql(api, ivan, f"{{ activity(id: {call}) {{ subject }} }}")
    assert _data(response) == {"activity": {"subject": "Call"}}
    assert response.headers["x-cache"] == "BYPASS"
    audit = await api.client.get(AUDIT, headers=api.auth(api.admin_key))
    assert audit.status_code == 200, audit.text
    rows = [(r["user_id"], r["type"], r["record_id"], r["transport"]) for r in audit.json()["data"]]
    assert rows == [(ivan_id, "Activity", call, "graphql")]


# --- keys and accounts -------------------------------------------------------------------


async def test_api_keys_are_issued_and_revoked(api: Api) -> None:
    await api.create_user("ivan", roles=["integration"])
    issued = await _query(
        api,
        api.admin_key,
        'mutation { createApiKey(login: "ivan", password: "a-long-password", name: "ci") '
        "{ id key name expires_at user { login roles permissions timezone } } }",
    )
    key = issued["createApiKey"]
    assert key["user"] == {
        "login": "ivan",
        "roles": ["integration"],
        "permissions": ["useApi"],
        "timezone": "Europe/Prague",
    }
    current = await api.client.get("/api/v1/auth/keys/current", headers=api.auth(key["key"]))
    assert current.json()["key"]["id"] == key["id"]
    wrong = _error(
        await _gql(
            api,
            api.admin_key,
            'mutation { createApiKey(login: "ivan", password: "wrong", name: "x") { id } }',
        )
    )
    assert wrong["extensions"] == {"code": "unauthenticated"}

    revoked = await _query(api, key["key"], f"mutation {{ revokeApiKey(id: {key['id']}) }}")
    assert revoked == {"revokeApiKey": True}
    after = await _gql(api, key["key"], "{ companies { total } }")
    assert after.status_code == 401


async def test_registration_challenges_over_graphql(api: Api) -> None:
    await api.create_user("desk", roles=["registrar", "integration"])
    desk = await api.login("desk")
    registered = await _query(
        api,
        desk,
        """mutation { register(
             user: {login: "newbie", password: "a-long-password", email: "newbie@example.com",
                    roles: ["integration"]},
             challenge: {methods: [email_code]}) { user_id challenge_id methods expires_at } }""",
    )
    registration = registered["register"]
    assert registration["methods"] == ["email_code"]
    challenge_id = registration["challenge_id"]
    async with api.db() as db:
        texts = await outbox_texts(db, "email", "newbie@example.com")
    code = re.findall(r"\b\d{6,10}\b", texts[-1])[0]

    cooldown = _error(
        await _gql(
            api,
            desk,
            f'mutation {{ retryChallenge(challengeId: "{challenge_id}") {{ challenge_id }} }}',
        )
    )
    assert cooldown["extensions"]["code"] == "rate_limited"
    assert cooldown["extensions"]["retry_after"] > 0

    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    refused = _error(
        await _gql(
            api,
            desk,
            f'mutation {{ challenge(challengeId: "{challenge_id}", method: "email_code", '
            f'code: "{wrong}") {{ activated }} }}',
        )
    )
    assert refused["extensions"]["code"] in {"invalid", "gone"}
    answered = await _query(
        api,
        desk,
        f'mutation {{ challenge(challengeId: "{challenge_id}", method: "email_code", '
        f'code: "{code}") {{ challenge_id satisfied pending activated }} }}',
    )
    assert answered["challenge"] == {
        "challenge_id": challenge_id,
        "satisfied": ["email_code"],
        "pending": [],
        "activated": True,
    }
    assert await api.login("newbie")


# --- without a database ------------------------------------------------------------------


async def test_unexpected_errors_are_masked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    tenant = load_tenant(DEMO_TENANT_FILE)
    schema = build_schema(tenant)
    admin = UserState(
        id=1,
        login="root",
        active=True,
        valid_from=None,
        valid_to=None,
        timezone=None,
        roles=("admin",),
        groups=(),
        security_version=0,
    )
    context = GraphQLContext(
        services=cast("Services", object()),  # every resolver call fails on it
        principal=build_principal(tenant, admin),
    )
    with caplog.at_level(logging.ERROR, logger="gateway.graphql"):
        result = await schema.execute("{ companies { total } }", context_value=context)
    assert result.errors is not None
    assert [e.message for e in result.errors] == ["Unexpected error."]
    assert result.errors[0].extensions == {}
    assert "unexpected error in GraphQL field companies" in caplog.text
    assert context.failed


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_graphiql_is_served_to_browsers_only_when_enabled(settings: Settings) -> None:
    browser = {"Accept": "text/html"}
    for graphiql, status in ((True, 200), (False, 401)):
        changed = dataclasses.replace(
            settings, graphql=dataclasses.replace(settings.graphql, graphiql=graphiql)
        )
        async with running_api(changed) as api:
            response = await api.client.get(GRAPHQL, headers=browser)
            assert response.status_code == status, response.text
            if graphiql:
                assert "graphiql" in response.text.lower()
                # The page needs no key; every operation does.
                refused = await api.client.get(GRAPHQL, params={"query": "{ companies { total } }"})
                assert refused.status_code == 401


def test_root_fields_generated_twice_are_refused() -> None:
    text = DEMO_TENANT_FILE.read_text() + (
        '\n[types.Companies.properties]\nname = { kind = "string" }\n'
    )
    with pytest.raises(ValueError, match="Query fields generated twice from the tenant: companies"):
        build_schema(parse_tenant(text))


def test_the_schema_is_generated_from_the_tenant() -> None:
    sdl = build_schema(load_tenant(DEMO_TENANT_FILE)).as_str()
    for line in (
        "type Company {",
        "  id: BigInt!",
        "  annual_revenue: Decimal",
        "  tags: [String!]!",
        "  company: Company",
        "  contacts: [Contact]!",
        "  expected_close: Month",
        "  closed_on: DateTime",
        "  birthday: Date",
        "  file: File",
        "  companies(where: CompanyWhere, filter: String, order: [CompanyOrder!], limit: Int, "
        "offset: Int, after: String, count: Boolean! = false, noCache: Boolean! = false): "
        "CompanyPage!",
        "  activities(",
        "  companyByRegistrationNo(value: String!, noCache: Boolean! = false): Company",
        "  contactByEmail(",
        "  createDeal(data: DealInput!): Deal!",
        "  updateDeal(id: BigInt!, data: DealPatch!): Deal!",
        "  replaceDeal(id: BigInt!, data: DealInput!): Deal!",
        "  deleteDeal(id: BigInt!): Boolean!",
        "  createApiKey(",
        "  retryChallenge(",
        "  public_sector",
    ):
        assert line in sdl, line
    assert "SyncCursor" not in sdl  # `api = false` types stay internal
    assert "internal_rating" not in sdl
