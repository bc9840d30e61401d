"""`/manage` over HTTP, without a browser: headers, cookie, CSRF, escaping, refusals.

The screen has no backend-specific behaviour: SQLite only.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from gateway.settings import DEMO_TENANT_FILE
from rest.manage_templates import human_bytes
from tests.conftest import Api, Backend, make_settings, start_api

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


def csrf(key: str) -> str:
    return hashlib.sha256(f"jgw-manage-csrf:{key}".encode()).hexdigest()


def assert_screen_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


async def sign_in(api: Api, key: str) -> httpx.Response:
    return await api.client.post("/manage/sign-in", data={"key": key}, follow_redirects=False)


async def warm(api: Api, *types: str) -> None:
    for type_name in types:
        response = await api.client.get(
            f"/api/v1/collections/{type_name}", headers=api.auth(api.admin_key)
        )
        assert response.status_code == 200, response.text


async def cache_types(api: Api) -> dict[str, int]:
    response = await api.client.get("/api/v1/admin/cache", headers=api.auth(api.admin_key))
    assert response.status_code == 200, response.text
    return {name: t["entries"] for name, t in response.json()["types"].items()}


@SQLITE
async def test_without_a_cookie_the_screen_is_the_sign_in_form(api: Api) -> None:
    response = await api.client.get("/manage")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_screen_headers(response)
    assert '<form method="post" action="/manage/sign-in">' in response.text
    assert "<script" not in response.text
    paths = (await api.client.get("/api/v1/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/manage")]


@SQLITE
async def test_sign_in_keeps_the_key_in_a_strict_session_cookie(api: Api) -> None:
    response = await sign_in(api, api.admin_key)
    assert response.status_code == 303
    assert response.headers["location"] == "/manage"
    assert_screen_headers(response)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"jgw_manage={api.admin_key};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path=/manage", "samesite=strict"} <= attributes
    assert not [a for a in attributes if a.startswith(("max-age", "expires", "secure"))]

    page = await api.client.get("/manage")
    assert page.status_code == 200
    assert_screen_headers(page)
    assert "Signed in as <strong>root</strong>" in page.text
    assert f'name="csrf" value="{csrf(api.admin_key)}"' in page.text
    assert api.admin_key not in page.text
    assert 'id="valkey">Valkey available' in page.text


@SQLITE
async def test_the_cookie_is_secure_over_https(api: Api) -> None:
    response = await api.client.post(
        "https://testserver/manage/sign-in",
        data={"key": api.admin_key},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "secure" in response.headers["set-cookie"].lower()


@SQLITE
@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("", 400, "Enter an API key."),
        ("x" * 201, 400, "far too long"),
        ("jgw_nonsense", 401, "That key was refused (missing or malformed API key)."),
        (f"jgw_{'0' * 16}_{'A' * 43}", 401, "That key was refused (unknown API key)."),
    ],
)
async def test_a_bad_key_is_refused_with_a_message(
    api: Api, key: str, status: int, message: str
) -> None:
    response = await sign_in(api, key)
    assert response.status_code == status
    assert_screen_headers(response)
    assert message in response.text
    assert "set-cookie" not in response.headers


@SQLITE
async def test_a_key_without_manage_cache_is_refused_at_sign_in(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    response = await sign_in(api, await api.login("carol"))
    assert response.status_code == 403
    assert "carol does not hold the manageCache permission." in response.text
    assert "set-cookie" not in response.headers


@SQLITE
async def test_a_revoked_key_stops_working_at_once(api: Api) -> None:
    await api.create_user("olga", roles=["operator"])
    key = await api.login("olga")
    assert (await sign_in(api, key)).status_code == 303
    assert (await api.client.get("/manage")).status_code == 200
    revoked = await api.client.delete("/api/v1/auth/keys/current", headers=api.auth(key))
    assert revoked.status_code == 204

    response = await api.client.get("/manage")
    assert response.status_code == 401
    assert "Your key no longer works (this API key has been revoked)." in response.text
    assert "jgw_manage=" in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()


@SQLITE
async def test_posts_without_the_csrf_token_are_refused(api: Api) -> None:
    await warm(api, "Company", "Deal")
    before = await cache_types(api)
    await sign_in(api, api.admin_key)
    for data in (
        {"scope": "all", "confirm": "1"},
        {"scope": "all", "confirm": "1", "csrf": "0" * 64},
        {"scope": "all", "confirm": "1", "csrf": "ünïcode"},
        {"scope": "all", "confirm": "1", "csrf": csrf("jgw_some_other_key")},
    ):
        response = await api.client.post("/manage/purge", data=data, follow_redirects=False)
        assert response.status_code == 403, data
        assert_screen_headers(response)
        assert "not sent from the current Application Management page" in response.text
    signed_out = await api.client.post("/manage/sign-out", follow_redirects=False)
    assert signed_out.status_code == 403
    assert await cache_types(api) == before


@SQLITE
async def test_a_token_without_the_cookie_is_refused(api: Api) -> None:
    response = await api.client.post(
        "/manage/purge",
        data={"scope": "all", "confirm": "1", "csrf": csrf(api.admin_key)},
        follow_redirects=False,
    )
    assert response.status_code == 403


@SQLITE
async def test_purge_by_type_asks_first_then_purges(api: Api) -> None:
    await warm(api, "Company", "Deal")
    assert set(await cache_types(api)) == {"Company", "Deal"}
    await sign_in(api, api.admin_key)
    token = csrf(api.admin_key)

    ask = await api.client.post(
        "/manage/purge", data={"scope": "type", "type": "Deal", "csrf": token}
    )
    assert ask.status_code == 200
    assert_screen_headers(ask)
    assert "Purge all cached entries of type <strong>Deal</strong>?" in ask.text
    assert '<input type="hidden" name="confirm" value="1">' in ask.text
    assert set(await cache_types(api)) == {"Company", "Deal"}

    done = await api.client.post(
        "/manage/purge",
        data={"scope": "type", "type": "Deal", "csrf": token, "confirm": "1"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/manage?purged=1"
    assert set(await cache_types(api)) == {"Company"}
    page = await api.client.get("/manage?purged=1")
    assert "Purged 1 entry." in page.text


@SQLITE
async def test_purge_all_and_by_user(api: Api) -> None:
    await warm(api, "Company", "Deal", "Contact")
    await sign_in(api, api.admin_key)
    token = csrf(api.admin_key)
    root_id = await api.client.get("/api/v1/auth/keys/current", headers=api.auth(api.admin_key))
    user_id = root_id.json()["user"]["id"]

    ask = await api.client.post(
        "/manage/purge", data={"scope": "user", "user": str(user_id), "csrf": token}
    )
    assert f"Purge all cached entries of user <strong>{user_id}</strong>?" in ask.text
    other = await api.client.post(
        "/manage/purge",
        data={"scope": "user", "user": str(user_id + 1), "csrf": token, "confirm": "1"},
        follow_redirects=False,
    )
    assert other.headers["location"] == "/manage?purged=0"
    assert len(await cache_types(api)) == 3

    everything = await api.client.post(
        "/manage/purge",
        data={"scope": "all", "csrf": token, "confirm": "1"},
        follow_redirects=False,
    )
    assert everything.headers["location"] == "/manage?purged=3"
    assert await cache_types(api) == {}
    assert "Purged 3 entries." in (await api.client.get("/manage?purged=3")).text


@SQLITE
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scope": "type", "type": "SyncCursor"}, "There is no such type."),
        ({"scope": "type", "type": "<b>Deal</b>"}, "There is no such type."),
        ({"scope": "type"}, "Choose one of the listed types."),
        ({"scope": "user", "user": "abc"}, "A user id is a positive whole number."),
        ({"scope": "user", "user": "0"}, "A user id is a positive whole number."),
        ({"scope": "user", "user": "9" * 30}, "A user id is a positive whole number."),
        ({"scope": "nothing"}, "Choose what to purge."),
    ],
)
async def test_bad_purge_input_is_a_message(api: Api, data: dict[str, str], message: str) -> None:
    await warm(api, "Deal")
    await sign_in(api, api.admin_key)
    response = await api.client.post(
        "/manage/purge", data={**data, "confirm": "1", "csrf": csrf(api.admin_key)}
    )
    assert response.status_code == 422
    assert_screen_headers(response)
    assert f'<p class="notice error" role="status">{message}</p>' in response.text
    assert "<b>Deal</b>" not in response.text
    assert set(await cache_types(api)) == {"Deal"}


@SQLITE
async def test_sign_out_forgets_the_key(api: Api) -> None:
    await sign_in(api, api.admin_key)
    response = await api.client.post(
        "/manage/sign-out", data={"csrf": csrf(api.admin_key)}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/manage"
    assert "max-age=0" in response.headers["set-cookie"].lower()
    page = await api.client.get("/manage")
    assert 'action="/manage/sign-in"' in page.text


@pytest.fixture
async def odd_api(backend: Backend, cache_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """The demo tenant under a name full of HTML."""
    tenant = tmp_path / "tenant.toml"
    text = DEMO_TENANT_FILE.read_text()
    tenant.write_text(text.replace('"Acme CRM (demo)"', "\"<script>alert('x')</script> & Co\""))
    async for started in start_api(make_settings(backend, cache_url, tmp_path / "d", tenant)):
        yield started


@SQLITE
async def test_everything_shown_is_escaped(odd_api: Api) -> None:
    for response in (
        await odd_api.client.get("/manage"),
        await sign_in(odd_api, "jgw_<i>not</i>"),
    ):
        assert "<script>" not in response.text
        assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; Co" in response.text
    await sign_in(odd_api, odd_api.admin_key)
    page = await odd_api.client.get("/manage")
    assert "&lt;script&gt;" in page.text
    assert "<script>" not in page.text


@pytest.fixture
async def api_without_valkey(
    backend: Backend, cache_url: str, tmp_path: Path
) -> AsyncIterator[Api]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    settings = make_settings(backend, cache_url, tmp_path)
    settings = replace(
        settings, valkey=replace(settings.valkey, url=f"valkey://127.0.0.1:{closed_port}")
    )
    async for started in start_api(settings):
        yield started


@SQLITE
async def test_valkey_down_is_a_friendly_message(api_without_valkey: Api) -> None:
    api = api_without_valkey
    assert (await sign_in(api, api.admin_key)).status_code == 303
    page = await api.client.get("/manage")
    assert page.status_code == 200
    assert 'id="valkey">Valkey unreachable' in page.text
    response = await api.client.post(
        "/manage/purge", data={"scope": "all", "confirm": "1", "csrf": csrf(api.admin_key)}
    )
    assert response.status_code == 503
    assert_screen_headers(response)
    assert "Valkey is unreachable: nothing was purged." in response.text


def test_numbers_read_as_humans_write_them() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1024, 1536, 5 * 2**20, 3 * 2**40)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 TiB",
    ]
    assert re.fullmatch(r"[0-9a-f]{64}", csrf("k"))
