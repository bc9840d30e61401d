"""GraphQL over GET at the ASGI edge (`schema.http.GraphQLEdge`): a plain read in the
query string is answered before Litestar routes it, exactly as `graphql_get` answers it
(status, every header but the date and request id, body; ETag and 304 included), and
everything else is left to Litestar. Compared with an app built with `hot_reads=False`
on the same database and Valkey, where Litestar routes every request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from rest.edge import GatewayApp
from schema.http import GraphQLEdge
from tests.conftest import Api
from tests.integration.test_graphql import _create, _user

_VOLATILE = {"date", "x-request-id"}


@pytest.fixture
async def routed(api: Api) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(api.settings, hot_reads=False)) as client:
        yield client


def _edge(api: Api) -> GraphQLEdge:
    assert isinstance(api.app, GatewayApp)
    return next(hot for hot in api.app.hot if isinstance(hot, GraphQLEdge))


def _comparable(response: Response) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k, v) for k, v in response.headers.multi_items() if k not in _VOLATILE)
    return response.status_code, headers, response.content


async def _same(
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
    assert _comparable(answered) == _comparable(await routed.get(url, headers=headers)), query
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
    found = await _same(api, routed, listing, hot=True, headers=auth)
    assert found.status_code == 200
    assert [c["name"] for c in found.json()["data"]["companies"]["items"]] == ["Acme", "Beta"]
    assert found.headers["x-cache"] == "HIT"
    assert found.headers["etag"]

    held = found.headers["etag"]
    revalidated = await _same(
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
        found = await _same(api, routed, query, hot=True, headers=auth)
        assert found.json() == {"data": {"company": {"id": acme, "name": "Acme"}}}

    bypass = await _same(
        api, routed, listing, hot=True, headers={**auth, "Cache-Control": "no-cache"}
    )
    assert bypass.headers["x-cache"] == "BYPASS"

    missing = await _same(
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
        await _same(api, routed, query, hot=False, headers=headers)


async def test_a_get_etag_changes_with_the_data_and_the_caller(
    api: Api, routed: AsyncTestClient[Litestar]
) -> None:
    """The ETag of a prepared GET answer names what it was cut from: a write gives a new
    one (the old one then revalidates to a 200), and another caller gets another one."""
    auth = api.auth(api.admin_key)
    acme = await _create(api, "Company", {"name": "Acme", "registration_no": "R-1"})
    get = _query(f"{{ company(id: {acme}) {{ id name }} }}")
    first = await _same(api, routed, get, hot=True, headers=auth)
    held = first.headers["etag"]
    assert (
        await api.client.get(f"/graphql?{get}", headers={**auth, "If-None-Match": held})
    ).status_code == 304

    renamed = await api.client.patch(
        f"/api/v1/collections/Company/{acme}", json={"name": "Acme II"}, headers=auth
    )
    assert renamed.status_code == 200, renamed.text
    second = await _same(api, routed, get, hot=True, headers={**auth, "If-None-Match": held})
    assert second.status_code == 200
    assert second.json()["data"]["company"]["name"] == "Acme II"
    assert second.headers["etag"] != held

    _, other_key = await _user(api, "edge-get-other", "admin")
    other = await _same(api, routed, get, hot=True, headers=api.auth(other_key))
    assert other.content == second.content
    assert other.headers["etag"] != second.headers["etag"]
