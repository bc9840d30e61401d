"""The key check at the ASGI edge (`rest.v1.security.check_presented_key`): once per
request, its verdict the one every route (`caller()`) and GraphQL use, each for its own
request only, and no route refused for a key it does not ask for."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import pytest
from valkey.asyncio import Valkey

from rest.v1.security import caller
from tests.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Api, start_api, wait_for_lease


async def _mget_calls(client: Valkey) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def _current_key_mgets(api: Api, client: Valkey) -> int:
    """MGETs made by the second of two `GET /auth/keys/current` of the admin."""
    await api.client.get("/api/v1/auth/keys/current", headers=api.auth(api.admin_key))
    before = await _mget_calls(client)
    response = await api.client.get("/api/v1/auth/keys/current", headers=api.auth(api.admin_key))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["login"] == ADMIN_LOGIN
    return await _mget_calls(client) - before


async def test_a_routed_request_checks_its_key_once(api: Api) -> None:
    """`GET /auth/keys/current` reads nothing from Valkey but the key: one MGET, not one
    at the edge and another in the route's dependency; none while a lease is held."""
    leases = api.app_services.key_leases
    assert leases is not None
    await wait_for_lease(leases)
    settings = replace(api.settings, valkey=replace(api.settings.valkey, key_leases=False))
    client = Valkey.from_url(str(api.settings.valkey.url))
    try:
        with_lease = await _current_key_mgets(api, client)
        async for without in start_api(settings):
            assert without.app_services.key_leases is None
            without_lease = await _current_key_mgets(without, client)
    finally:
        await client.aclose()
    assert (with_lease, without_lease) == (0, 1)


async def test_the_edge_verdict_refuses_a_revoked_key_on_the_next_request(api: Api) -> None:
    key = await api.login(ADMIN_LOGIN, ADMIN_PASSWORD)
    current = await api.client.get("/api/v1/auth/keys/current", headers=api.auth(key))
    assert current.status_code == 200, current.text
    revoked = await api.client.delete("/api/v1/auth/keys/current", headers=api.auth(key))
    assert revoked.status_code == 204, revoked.text
    for path in ("/api/v1/auth/keys/current", "/api/v1/collections/Contact"):
        refused = await api.client.get(path, headers=api.auth(key))
        assert refused.status_code == 401, (path, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "revoked" in refused.json()["detail"]
    graphql = await api.client.post(
        "/graphql", json={"query": "{ __typename }"}, headers=api.auth(key)
    )
    assert graphql.status_code == 401, graphql.text


async def test_a_bad_key_does_not_refuse_a_route_that_asks_for_none(api: Api) -> None:
    """Logging in (a route without a `principal`) while presenting a malformed key: the
    edge's refusal is never raised."""
    response = await api.client.post(
        "/api/v1/auth/keys",
        json={"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD, "name": "again"},
        headers=api.auth("jgw_not_a_key"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["key"].startswith("jgw_")


async def test_every_routed_request_is_answered_for_its_own_key(api: Api, live_url: str) -> None:
    """`caller()` answers for the request being routed: over one kept-alive connection,
    and with many requests in flight at once, each names its own key's user, and one
    without a key is refused, whatever came before it."""
    await api.create_user("ada", roles=["integration"])
    keys = {ADMIN_LOGIN: api.admin_key, "ada": await api.login("ada")}

    def headers(login: str | None) -> dict[str, str]:
        return {} if login is None else api.auth(keys[login])

    def user(response: httpx.Response) -> str | None:
        if response.status_code == 401:
            return None
        assert response.status_code == 200, response.text
        login: str = response.json()["user"]["login"]
        return login

    path = "/api/v1/auth/keys/current"
    order = [ADMIN_LOGIN, None, "ada", "ada", ADMIN_LOGIN, None, None, "ada"]
    one_connection = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=live_url, limits=one_connection) as client:
        answered = [user(await client.get(path, headers=headers(login))) for login in order]
    assert answered == order
    async with httpx.AsyncClient(base_url=live_url) as client:
        responses = await asyncio.gather(
            *(client.get(path, headers=headers(login)) for login in order * 8)
        )
    assert [user(r) for r in responses] == order * 8


async def test_caller_outside_a_routed_request_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="outside a request"):
        await caller()
