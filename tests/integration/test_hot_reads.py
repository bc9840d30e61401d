"""Reads answered at the ASGI edge (`rest.hot_reads`, `schema.http.GraphQLEdge`), on both
backends.

The same requests go to the app (`api`, hot reads on) and to a second app on the same
database and Valkey built with `hot_reads=False`, where Litestar routes every request.
Status, body and every header but `date` and `x-request-id` (for REST in order) must be equal,
and the edge must have answered exactly the requests it claims (`HotReads.answered`):
gets and lists, cached or bypassing the cache, and the resolvers' errors; never keys in
the URL, parameters out of bounds, CORS, unknown or audited types. Plain GraphQL reads
too, POSTed or in a GET's query string (with the GET's ETag and 304).
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from rest.edge import GatewayApp
from rest.hot_reads import HotReads
from schema.http import GraphQLEdge
from tests.conftest import Api, Backend, make_settings, start_api, statements_on
from tests.integration.test_graphql import _create, _user

COLLECTIONS = "/api/v1/collections"
_VOLATILE = {"date", "x-request-id"}


@pytest.fixture
async def routed(api: Api) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client of an app on `api`'s database and Valkey, without hot reads."""
    async with AsyncTestClient(create_app(api.settings, hot_reads=False)) as client:
        yield client


def _hot(api: Api) -> HotReads:
    assert isinstance(api.app, GatewayApp)
    hot = api.app.hot[0]
    assert isinstance(hot, HotReads)
    return hot


def _edge(api: Api) -> GraphQLEdge:
    assert isinstance(api.app, GatewayApp)
    edge = api.app.hot[1]
    assert isinstance(edge, GraphQLEdge)
    return edge


def _comparable(response: Response, *, ordered: bool = True) -> tuple[int, Any, bytes]:
    """Status, headers (in order, unless not `ordered`) and body."""
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _VOLATILE]
    return response.status_code, headers if ordered else sorted(headers), response.content


async def _same(
    api: Api,
    routed: AsyncTestClient[Litestar],
    path: str,
    *,
    hot: bool,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> Response:
    """One request to both apps; the answers must match, and the edge answer iff `hot`."""
    url = f"{COLLECTIONS}/{path}" + (f"?{query}" if query else "")
    sent = headers or {}
    await routed.get(url, headers=sent)  # the first may fill the cache: then both hit it
    before = _hot(api).answered
    answered = await api.client.get(url, headers=sent)
    assert _hot(api).answered - before == (1 if hot else 0), (url, answered.text)
    assert _comparable(answered) == _comparable(await routed.get(url, headers=sent)), url
    return answered


@pytest.fixture
async def seeded(api: Api) -> dict[str, Any]:
    ids = {}
    for name, industry, employees in (
        ("Acme", "retail", 50),
        ("Élan", "public sector", 7),
        ("Beta Co", "retail", 900),
    ):
        ids[name] = await _create(
            api,
            "Company",
            {
                "name": name,
                "industry": industry,
                "employees": employees,
                "registration_no": f"R-{employees}",
            },
        )
    ids["deal"] = await _create(
        api,
        "Deal",
        {"title": "Big", "company": ids["Acme"], "status": "open", "margin_percent": "3.5"},
    )
    ids["activity"] = await _create(
        api, "Activity", {"subject": "Call", "kind": "call", "deal": ids["deal"]}
    )
    return ids


async def test_cached_reads_are_answered_at_the_edge_exactly_as_routed(
    api: Api, routed: AsyncTestClient[Litestar], seeded: dict[str, Any]
) -> None:
    auth = api.auth(api.admin_key)
    acme = seeded["Acme"]
    hot_requests = [
        ("Company", ""),
        ("Company", "_order=-employees&_limit=2&_count=1"),
        ("Company", "_filter=industry+%3D+'retail'&_fields=name,employees"),
        ("Company", "_filter=employees%20%3E%3D%2010&_hide=website&_offset=1"),
        ("Company", "industry=retail&_order=name"),
        ("Company", "name=%C3%89lan"),
        (f"Company/{acme}", ""),
        ("Deal", "status=open"),
        ("Company/by/registration_no/R-50", ""),
        ("Company/by/registration_no/R-7", "_noCache=0"),
    ]
    for path, query in hot_requests:
        found = await _same(api, routed, path, hot=True, query=query, headers=auth)
        assert found.status_code == 200, found.text
        assert found.headers["x-cache"] == "HIT"
    # Bypasses: answered at the edge too, straight from the database.
    for path, query, headers in (
        ("Company", "_noCache=1&_order=name", auth),
        (f"Company/{acme}", "_noCache=1", auth),
        (f"Company/{acme}", "", {**auth, "Cache-Control": "no-cache"}),
        ("Company", "", {**auth, "Pragma": "no-cache"}),
    ):
        found = await _same(api, routed, path, hot=True, query=query, headers=headers)
        assert found.headers["x-cache"] == "BYPASS"
    found = await _same(api, routed, f"Company/{acme}", hot=True, query="_noCache=0", headers=auth)
    assert found.headers["x-cache"] == "HIT"
    page = (
        await api.client.get(f"{COLLECTIONS}/Company?_limit=1&_order=name", headers=auth)
    ).json()
    after = page["meta"]["next"]
    await _same(
        api, routed, "Company", hot=True, query=f"_limit=1&_order=name&_after={after}", headers=auth
    )
    # Revalidation: 304 for the ETag held, 200 for another.
    etag = (await api.client.get(f"{COLLECTIONS}/Company/{acme}", headers=auth)).headers["etag"]
    for held, status in ((etag, 304), ('"0000"', 200), (f'W/{etag}, "x"', 304)):
        revalidated = await _same(
            api, routed, f"Company/{acme}", hot=True, headers={**auth, "If-None-Match": held}
        )
        assert revalidated.status_code == status


_BAD_KEY = "jgw_0000000000000000_" + "x" * 43


async def test_errors_are_answered_at_the_edge_exactly_as_routed(
    api: Api, routed: AsyncTestClient[Litestar], seeded: dict[str, Any]
) -> None:
    auth = api.auth(api.admin_key)
    _, reporter_key = await _user(api, "edge-reporter", "reporter")
    reporter = api.auth(reporter_key)
    _, integration_key = await _user(api, "edge-integration", "integration")
    integration = api.auth(integration_key)
    _, revoked_key = await _user(api, "edge-revoked", "integration")
    revoked = await api.client.delete("/api/v1/auth/keys/current", headers=api.auth(revoked_key))
    assert revoked.status_code == 204
    secret = await _create(api, "Document", {"title": "Secret", "confidential": True})
    acme = seeded["Acme"]
    errors = [
        # the key: bad, missing, malformed, revoked; checked before anything else
        (f"Company/{acme}", "", {"Authorization": f"Bearer {_BAD_KEY}"}, 401),
        (f"Company/{acme}", "", {"X-API-Key": _BAD_KEY}, 401),
        (f"Company/{acme}", "", {}, 401),
        ("Company", "", {"Authorization": "Basic cm9vdDpyb290"}, 401),
        ("Company/by/registration_no/R-50", "", {"Authorization": "Bearer nope"}, 401),
        ("Company", "_order=name", api.auth(revoked_key), 401),
        ("Company/999999", "", {"Authorization": f"Bearer {_BAD_KEY}"}, 401),
        ("Company", "_filter=name+%3D", {}, 401),
        # the record: missing, outside the role's row scope, of a type the role cannot read
        ("Company/999999", "", auth, 404),
        ("Company/999999", "_noCache=1", auth, 404),
        (f"Document/{secret}", "", integration, 404),
        (f"Document/{secret}", "", reporter, 403),
        ("Document", "", reporter, 403),
        ("Company/by/registration_no/none", "", auth, 404),
        ("Company/by/nope/R-50", "", auth, 422),
        ("Company/by/name/Acme", "", auth, 422),
        # the list's parameters: the grammar, unknown and hidden fields, paging
        ("Company", "_filter=name+%3D", auth, 422),
        ("Company", "_filter=nope+%3D+1", auth, 422),
        ("Company", "_order=nope", auth, 422),
        ("Company", "nope=1", auth, 422),
        ("Company", "employees=many", auth, 422),
        ("Company", "_offset=1&_after=abc", auth, 422),
        ("Company", "_after=not-a-cursor", auth, 422),
        ("Deal", "_fields=margin_percent", reporter, 422),
        ("Deal", "_order=-margin_percent", reporter, 422),
        ("Deal", "_filter=margin_percent+%3E+1", reporter, 422),
        ("Deal", "margin_percent=3.5", reporter, 422),
    ]
    for path, query, headers, status in errors:
        found = await _same(api, routed, path, hot=True, query=query, headers=headers)
        assert found.status_code == status, (path, query, found.text)
        assert found.headers["content-type"] == "application/problem+json"
        assert found.headers["cache-control"] == "no-store"
        assert ("www-authenticate" in found.headers) == (status == 401)


async def test_what_the_edge_leaves_to_litestar_is_answered_the_same(
    api: Api, routed: AsyncTestClient[Litestar], seeded: dict[str, Any]
) -> None:
    auth = api.auth(api.admin_key)
    acme = seeded["Acme"]
    cold = [
        # parameters out of the routes' declared bounds, or given twice
        ("Company/0", "", auth),
        ("Company/99999999999999999999", "", auth),
        ("Company/" + "9" * 5000, "", auth),
        ("Company", "_limit=0", auth),
        ("Company", "_limit=1001", auth),
        ("Company", "_limit=abc", auth),
        ("Company", "_limit=1&_limit=2", auth),
        ("Company", "_limit=0", {}),
        ("Company", "_filter=" + "x" * 5000, auth),
        ("Company", "_noCache=2", auth),
        (f"Company/{acme}", "_noCache=1&x=1", auth),
        ("Company/by/registration_no/", "", auth),
        ("Company/by/registration_no/R-50", "x=1", auth),
        # keys in the URL, CORS, an audited type, an unknown or internal type
        ("Company", "api_key=secret", auth),
        ("Company", "name=jgw_x", auth),
        (f"Company/{acme}", "", {**auth, "Origin": "https://app.example"}),
        (f"Activity/{seeded['activity']}", "", auth),
        ("Nope", "", auth),
        ("Nope/1", "", auth),
        ("SyncCursor", "", auth),
    ]
    for path, query, headers in cold:
        await _same(api, routed, path, hot=False, query=query, headers=headers)


async def test_a_missing_record_is_read_once(
    api: Api, routed: AsyncTestClient[Litestar], seeded: dict[str, Any]
) -> None:
    """A miss is never cached: before the edge answered errors, Litestar read it again."""
    auth = api.auth(api.admin_key)
    url = f"{COLLECTIONS}/Company/999999"
    with statements_on(routed.app.state.services, "c_company") as routed_reads:
        assert (await routed.get(url, headers=auth)).status_code == 404
    before = _hot(api).answered
    with statements_on(api.app_services, "c_company") as edge_reads:
        assert (await api.client.get(url, headers=auth)).status_code == 404
    assert _hot(api).answered == before + 1
    assert len(edge_reads) == len(routed_reads) == 1, edge_reads


@pytest.fixture
async def valkey_down(
    backend: Backend, cache_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Api, AsyncTestClient[Litestar]]]:
    """`api` and `routed` on a Valkey that is not there (a closed port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = make_settings(backend, cache_url, tmp_path / "data")
    settings = replace(
        settings, valkey=replace(settings.valkey, url=f"valkey://127.0.0.1:{closed_port}")
    )
    async for started in start_api(settings):
        async with AsyncTestClient(create_app(settings, hot_reads=False)) as client:
            yield started, client


async def test_with_valkey_down_the_edge_answers_as_routed(
    valkey_down: tuple[Api, AsyncTestClient[Litestar]],
) -> None:
    api, routed = valkey_down
    auth = api.auth(api.admin_key)
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    for path, query, headers, status in (
        (f"Company/{acme}", "", auth, 200),
        ("Company", "_order=name", auth, 200),
        ("Company/by/registration_no/R-1", "", auth, 200),
        ("Company/999999", "", auth, 404),
        ("Company", "_filter=name+%3D", auth, 422),
        (f"Company/{acme}", "", {"Authorization": f"Bearer {_BAD_KEY}"}, 401),
    ):
        found = await _same(api, routed, path, hot=True, query=query, headers=headers)
        assert found.status_code == status, (path, found.text)
        if status == 200:
            assert found.headers["x-cache"] == "BYPASS"


async def test_a_write_is_seen_by_the_next_edge_read(
    api: Api, routed: AsyncTestClient[Litestar], seeded: dict[str, Any]
) -> None:
    auth = api.auth(api.admin_key)
    acme = seeded["Acme"]
    first = await _same(api, routed, f"Company/{acme}", hot=True, headers=auth)
    listed = await _same(api, routed, "Company", hot=True, query="_order=name", headers=auth)
    changed = await routed.patch(
        f"{COLLECTIONS}/Company/{acme}", json={"name": "Acme 2"}, headers=auth
    )
    assert changed.status_code == 200, changed.text
    again = await _same(api, routed, f"Company/{acme}", hot=True, headers=auth)
    assert again.json()["data"]["name"] == "Acme 2"
    assert again.headers["etag"] != first.headers["etag"]
    relisted = await _same(api, routed, "Company", hot=True, query="_order=name", headers=auth)
    assert relisted.json() != listed.json()


async def _same_graphql(
    api: Api,
    routed: AsyncTestClient[Litestar],
    content: bytes,
    *,
    hot: bool,
    headers: dict[str, str],
) -> Response:
    sent = {"Content-Type": "application/json", **headers}
    await routed.post("/graphql", content=content, headers=sent)
    before = _edge(api).answered
    answered = await api.client.post("/graphql", content=content, headers=sent)
    assert _edge(api).answered - before == (1 if hot else 0), (content, answered.text)
    again = await routed.post("/graphql", content=content, headers=sent)
    assert _comparable(answered, ordered=False) == _comparable(again, ordered=False), content
    return answered


async def test_plain_graphql_reads_are_answered_at_the_edge_exactly_as_routed(
    api: Api, routed: AsyncTestClient[Litestar], seeded: dict[str, Any]
) -> None:
    auth = api.auth(api.admin_key)
    _, reporter_key = await _user(api, "edge-reporter2", "reporter")
    acme = seeded["Acme"]
    hot = [
        '{"query": "{ companies(order: [{field: name}]) { items { id name industry } } }"}',
        '{"query": "query C($id: BigInt!) { company(id: $id) { id name } }", '
        f'"variables": {{"id": {acme}}}, "operationName": "C"}}',
        '{"query": "{ deal(id: 999999) { id } }"}',
    ]
    for content in hot:
        found = await _same_graphql(api, routed, content.encode(), hot=True, headers=auth)
        assert found.status_code == 200
        assert "errors" not in found.json()
    bypass = {**auth, "Cache-Control": "no-cache"}
    content = b'{"query": "{ companies { items { id } } }"}'
    found = await _same_graphql(api, routed, content, hot=True, headers=bypass)
    assert found.headers["x-cache"] == "BYPASS"
    cold = [
        ('{"query": "{ companies { items { id } } }"}', {}),
        ('{"query": "{ companies { items { id } } }"}', {"Authorization": "Bearer nope"}),
        ('{"query": "{ deals { items { margin_percent } } }"}', api.auth(reporter_key)),
        ('{"query": "{ companies { items { ...F } } } fragment F on Company { id }"}', auth),
        ('{"query": "mutation { deleteCompany(id: 999999) }"}', auth),
        ('[{"query": "{ companies { total } }"}]', auth),
        ('{"query": 1}', auth),
        ("{not json", auth),
        ('{"query": "{ companies { items { id } } }"}', {**auth, "Origin": "https://a.example"}),
    ]
    for content, headers in cold:
        await _same_graphql(api, routed, content.encode(), hot=False, headers=headers)


# --- GraphQL over GET ---------------------------------------------------------


async def _same_get(
    api: Api,
    routed: AsyncTestClient[Litestar],
    query: str,
    *,
    hot: bool,
    headers: dict[str, str],
) -> Response:
    """`GET /graphql?<query>` to both apps: the same answer, from the edge iff `hot`."""
    url = f"/graphql?{query}"
    await routed.get(url, headers=headers)  # the first may fill the cache: then both hit it
    before = _edge(api).answered
    answered = await api.client.get(url, headers=headers)
    assert _edge(api).answered - before == (1 if hot else 0), (query, answered.text)
    assert _comparable(answered, ordered=False) == _comparable(
        await routed.get(url, headers=headers), ordered=False
    ), query
    return answered


def _query(document: str, **more: str) -> str:
    return urlencode({"query": document, **more})


async def test_plain_reads_over_get_are_answered_at_the_edge_exactly_as_routed(
    api: Api, routed: AsyncTestClient[Litestar]
) -> None:
    auth = api.auth(api.admin_key)
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    await _create(api, "Company", {"name": "Beta", "registration_no": "R-2"})
    listing = _query("{ companies(order: [{field: name}]) { items { id name } total } }")
    found = await _same_get(api, routed, listing, hot=True, headers=auth)
    assert found.status_code == 200
    assert [c["name"] for c in found.json()["data"]["companies"]["items"]] == ["Acme", "Beta"]
    assert found.headers["x-cache"] == "HIT"
    assert found.headers["etag"]

    held = found.headers["etag"]
    revalidated = await _same_get(
        api, routed, listing, hot=True, headers={**auth, "If-None-Match": held}
    )
    assert revalidated.status_code == 304
    assert revalidated.content == b""

    get = _query(
        "query C($id: BigInt!) { company(id: $id) { id name } }",
        variables=f'{{"id": {acme}}}',
        operationName="C",
    )
    for query in (get, f"&{get}&&"):  # empty parts are skipped, as Litestar skips them
        found = await _same_get(api, routed, query, hot=True, headers=auth)
        assert found.json() == {"data": {"company": {"id": acme, "name": "Acme"}}}

    bypass = await _same_get(
        api, routed, listing, hot=True, headers={**auth, "Cache-Control": "no-cache"}
    )
    assert bypass.headers["x-cache"] == "BYPASS"

    missing = await _same_get(
        api, routed, _query("{ company(id: 999999) { id } }"), hot=True, headers=auth
    )
    assert missing.json() == {"data": {"company": None}}


async def test_what_the_edge_leaves_to_litestar_over_get_is_answered_the_same(
    api: Api, routed: AsyncTestClient[Litestar]
) -> None:
    auth = api.auth(api.admin_key)
    _, reporter_key = await _user(api, "edge-get-reporter", "reporter")
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    deal = {"title": "Big", "company": acme, "status": "open", "margin_percent": "3.5"}
    await _create(api, "Deal", deal)
    plain = "{ companies { items { id } } }"
    cold = [
        (_query(plain), {}),  # no key
        (_query(plain), {"Authorization": "Bearer nope"}),
        (_query("{ deals { items { margin_percent } } }"), api.auth(reporter_key)),  # hidden
        (_query("{ companies { items { ...F } } } fragment F on Company { id }"), auth),
        (_query("mutation { deleteCompany(id: 999999) }"), auth),  # no mutation over GET
        (f"{_query(plain)}&query={plain}", auth),  # twice
        (f"{_query(plain)}&extra=1", auth),
        (_query(plain, operationName="jgw_x_y"), auth),  # refused: looks like a key
        (_query(plain, variables="{not json"), auth),
        (_query(plain, variables="[1]"), auth),
        ("query=", auth),
        ("", {**auth, "Accept": "application/json"}),
        (_query(plain), {**auth, "Origin": "https://a.example"}),
    ]
    for query, headers in cold:
        await _same_get(api, routed, query, hot=False, headers=headers)


async def test_a_get_with_its_variables_last_is_bound_as_the_full_query_string_would_be(
    api: Api, routed: AsyncTestClient[Litestar]
) -> None:
    """`<document>&variables=<JSON>` is read by a shortcut (`PreparedReads._bind_variables`);
    what the shortcut declines is read in full, so every form answers as routed."""
    auth = api.auth(api.admin_key)
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    get = _query("query C($id: BigInt!) { company(id: $id) { id name } }")
    by = _query("query B($v: String!) { companyByRegistrationNo(value: $v) { id name } }")
    named = _query("query C($id: BigInt!) { company(id: $id) { id } }", operationName="C")
    hot = [
        f"{get}&variables=" + quote(f'{{"id": {acme}}}'),  # spaces as %20
        f"{get}&{urlencode({'variables': json.dumps({'id': acme})})}",  # spaces as +
        f"{get}&variables=" + quote(f'{{"id":{acme},"unused":"\u00e9"}}'),
        f"{by}&{urlencode({'variables': json.dumps({'v': 'R-1'})})}",
        f"{named}&variables=" + quote(f'{{"id":{acme}}}'),
        f"{get}&variables=" + quote('{"id": 999999}'),  # no such record: null
        f"{get}&variables=" + quote(f'{{"id": "{acme}"}}'),  # text: graphql-core coerces it
        f"{get}&variables=" + quote(f'{{"id":{acme},"x":"') + "%FF" + quote('"}'),  # not UTF-8
        "variables=" + quote(f'{{"id":{acme}}}') + f"&{get}",  # variables first
    ]
    for query in hot:
        found = await _same_get(api, routed, query, hot=True, headers=auth)
        assert found.status_code == 200, query
    assert (await api.client.get(f"/graphql?{hot[0]}", headers=auth)).json() == {
        "data": {"company": {"id": acme, "name": "Acme"}}
    }
    cold = [
        f"{get}&variables=null",
        f"{get}&variables=",
        f"{get}&variables=" + quote('{"id": 1.5}'),
        f"{get}&variables=" + quote('"jgw_a_b"'),
        f"{get}&variables=jgw_{acme}",
        f"{get}&variables=" + quote(f'{{"id":{acme}}}') + "&variables=" + quote('{"id":1}'),
        f"{get}&variables=" + quote(f'{{"id":{acme}}}') + "&extra=1",
        f"{get}&variables=" + quote(f'{{"id":{2**63}}}'),  # beyond BigInt
        _query("{ company(id: 1) { id } }") + "&variables=" + quote('{"id": 1}') + "&query=x",
    ]
    for query in cold:
        await _same_get(api, routed, query, hot=False, headers=auth)


async def test_a_get_etag_changes_with_the_data_and_the_caller(
    api: Api, routed: AsyncTestClient[Litestar]
) -> None:
    """The ETag of a prepared GET answer names what it was cut from: a write gives a new
    one (the old one then revalidates to a 200), and another caller gets another one."""
    auth = api.auth(api.admin_key)
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    get = _query(f"{{ company(id: {acme}) {{ id name }} }}")
    first = await _same_get(api, routed, get, hot=True, headers=auth)
    held = first.headers["etag"]
    assert (
        await api.client.get(f"/graphql?{get}", headers={**auth, "If-None-Match": held})
    ).status_code == 304

    renamed = await api.client.patch(
        f"/api/v1/collections/Company/{acme}", json={"name": "Acme II"}, headers=auth
    )
    assert renamed.status_code == 200, renamed.text
    second = await _same_get(api, routed, get, hot=True, headers={**auth, "If-None-Match": held})
    assert second.status_code == 200
    assert second.json()["data"]["company"]["name"] == "Acme II"
    assert second.headers["etag"] != held

    _, other_key = await _user(api, "edge-get-other", "admin")
    other = await _same_get(api, routed, get, hot=True, headers=api.auth(other_key))
    assert other.content == second.content
    assert other.headers["etag"] != second.headers["etag"]
