"""`/api/v1/users`: administration bounded by the actor's own rights (both backends)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from httpx import Response
from sqlalchemy import select

from tests.conftest import USER_PASSWORD, Api

USERS = "/api/v1/users"
CURRENT_KEY = "/api/v1/auth/keys/current"
NEW_PASSWORD = "another-long-password"


async def _operator(api: Api, login: str = "opal", **fields: object) -> tuple[int, str]:
    """A user with manageUsers but not admin; returns its id and a key."""
    user_id = await api.create_user(login, roles=["operator"], **fields)
    return user_id, await api.login(login)


def _fields_in(response: Response) -> set[str]:
    errors: list[dict[str, str]] = response.json()["errors"]
    return {e["field"] for e in errors}


def _assert_no_secrets(response: Response, *passwords: str) -> None:
    for password in passwords:
        assert password not in response.text
    assert "hash" not in response.text
    assert "$argon2" not in response.text
    assert "password" not in response.text


async def _logins(api: Api) -> set[str]:
    listed = await api.client.get(USERS, headers=api.auth(api.admin_key))
    assert listed.status_code == 200, listed.text
    return {u["login"] for u in listed.json()}


async def test_crud_round_trip_never_shows_a_password_or_hash(api: Api) -> None:
    admin = api.auth(api.admin_key)
    created = await api.client.post(
        USERS,
        json={
            "login": "carol",
            "password": USER_PASSWORD,
            "email": "carol@example.com",
            "phone": "+420 123 456 789",
            "timezone": "Europe/London",
            "roles": ["integration"],
            "groups": ["Reporting"],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    _assert_no_secrets(created, USER_PASSWORD)
    body = created.json()
    user_id = body["id"]
    assert {k: body[k] for k in ("login", "email", "phone", "timezone", "active")} == {
        "login": "carol",
        "email": "carol@example.com",
        "phone": "+420 123 456 789",
        "timezone": "Europe/London",
        "active": True,
    }
    assert body["roles"] == ["integration"]
    assert body["groups"] == ["Reporting"]
    assert body["valid_from"] is None
    assert body["valid_to"] is None

    async with api.db() as services:
        users = services.schema.system.users
        async with services.engine.connect() as conn:
            stored = await conn.scalar(select(users.c.password_hash).where(users.c.id == user_id))
    assert stored is not None
    assert stored.startswith("$argon2id$")

    fetched = await api.client.get(f"{USERS}/{user_id}", headers=admin)
    assert fetched.status_code == 200
    assert fetched.json() == body
    _assert_no_secrets(fetched, USER_PASSWORD)
    listed = await api.client.get(USERS, headers=admin)
    assert [u["login"] for u in listed.json()] == ["root", "carol"]
    _assert_no_secrets(listed, USER_PASSWORD)

    old_key = await api.login("carol")
    changed = await api.client.patch(
        f"{USERS}/{user_id}",
        json={"email": None, "password": NEW_PASSWORD, "groups": []},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    _assert_no_secrets(changed, NEW_PASSWORD, USER_PASSWORD)
    assert changed.json()["email"] is None
    assert changed.json()["groups"] == []
    assert changed.json()["roles"] == ["integration"]  # untouched by a partial update
    refused = await api.client.post(
        "/api/v1/auth/keys", json={"login": "carol", "password": USER_PASSWORD, "name": "old"}
    )
    assert refused.status_code == 401
    await api.login("carol", NEW_PASSWORD)

    assert (await api.client.delete(f"{USERS}/{user_id}", headers=admin)).status_code == 204
    assert (await api.client.get(f"{USERS}/{user_id}", headers=admin)).status_code == 404
    assert (await api.client.patch(f"{USERS}/{user_id}", json={}, headers=admin)).status_code == 404
    assert (await api.client.delete(f"{USERS}/{user_id}", headers=admin)).status_code == 404
    assert (await api.client.get(CURRENT_KEY, headers=api.auth(old_key))).status_code == 401


def _every_route(user_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", USERS, None),
        ("POST", USERS, {"login": "mallory", "password": USER_PASSWORD}),
        ("GET", f"{USERS}/{user_id}", None),
        ("PATCH", f"{USERS}/{user_id}", {"email": "x@example.com"}),
        ("DELETE", f"{USERS}/{user_id}", None),
    ]


async def test_without_manage_users_every_route_is_forbidden(api: Api) -> None:
    own_id = await api.create_user("ivan", roles=["integration"], groups=["Reporting"])
    other_id = await api.create_user("olga")
    key = await api.login("ivan")
    for user_id in (own_id, other_id):
        for method, url, body in _every_route(user_id):
            response = await api.client.request(method, url, json=body, headers=api.auth(key))
            assert response.status_code == 403, (method, url, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    # Even a body that names forbidden fields is answered with the missing right first.
    response = await api.client.patch(
        f"{USERS}/{own_id}", json={"roles": ["admin"], "is_admin": True}, headers=api.auth(key)
    )
    assert response.status_code == 403
    assert await _logins(api) == {"root", "ivan", "olga"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer jgw_0123456789abcdef_" + "A" * 43},
        {"X-API-Key": "not-a-key"},
    ],
    ids=["none", "unknown", "malformed"],
)
async def test_without_a_valid_key_every_route_is_unauthenticated(
    api: Api, headers: dict[str, str]
) -> None:
    for method, url, body in _every_route(1):
        response = await api.client.request(method, url, json=body, headers=headers)
        assert response.status_code == 401, (method, url, response.text)
        assert "WWW-Authenticate" in response.headers
    assert await _logins(api) == {"root"}


async def test_an_operator_manages_users_within_its_own_roles(api: Api) -> None:
    operator_id, key = await _operator(api)
    headers = api.auth(key)
    listed = await api.client.get(USERS, headers=headers)
    assert listed.status_code == 200
    assert {u["login"] for u in listed.json()} == {"root", "opal"}
    assert (await api.client.get(f"{USERS}/1", headers=headers)).status_code == 200
    assert (await api.client.get(f"{USERS}/{operator_id}", headers=headers)).status_code == 200

    created = await api.client.post(
        USERS,
        json={"login": "peter", "password": USER_PASSWORD, "roles": ["operator"]},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    peter = created.json()["id"]
    changed = await api.client.patch(
        f"{USERS}/{peter}", json={"roles": [], "active": False}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["roles"] == []
    assert changed.json()["active"] is False
    assert (await api.client.delete(f"{USERS}/{peter}", headers=headers)).status_code == 204


_NOT_HELD: list[dict[str, list[str]]] = [
    {"roles": ["admin"]},
    {"roles": ["operator", "integration"]},
    {"roles": ["reporter"]},
    {"groups": ["Reporting"]},
    {"groups": ["Application access"]},
]


async def test_an_operator_cannot_grant_what_it_does_not_hold(api: Api) -> None:
    _, key = await _operator(api)
    headers = api.auth(key)
    plain = await api.create_user("plain")
    for grant in _NOT_HELD:
        created = await api.client.post(
            USERS, json={"login": "mallory", "password": USER_PASSWORD, **grant}, headers=headers
        )
        assert created.status_code == 403, (grant, created.text)
        changed = await api.client.patch(f"{USERS}/{plain}", json=grant, headers=headers)
        assert changed.status_code == 403, (grant, changed.text)

    assert await _logins(api) == {"root", "opal", "plain"}
    after = (await api.client.get(f"{USERS}/{plain}", headers=api.auth(api.admin_key))).json()
    assert after["roles"] == []
    assert after["groups"] == []


async def test_an_operator_cannot_touch_users_holding_more_than_it_does(api: Api) -> None:
    _, key = await _operator(api)
    headers = api.auth(key)
    integrator = await api.create_user("ivan", groups=["Application access"])
    for target in (1, integrator):  # the admin, and a user with a role the operator lacks
        for change in ({"email": "pwned@example.com"}, {"password": NEW_PASSWORD}, {"roles": []}):
            response = await api.client.patch(f"{USERS}/{target}", json=change, headers=headers)
            assert response.status_code == 403, (target, change, response.text)
        response = await api.client.delete(f"{USERS}/{target}", headers=headers)
        assert response.status_code == 403, response.text
    assert await _logins(api) == {"root", "opal", "ivan"}
    await api.login("ivan")  # its password is unchanged
    admin = (await api.client.get(f"{USERS}/1", headers=api.auth(api.admin_key))).json()
    assert admin["email"] is None
    assert admin["roles"] == ["admin"]


_SELF_LOCKED: list[dict[str, object]] = [
    {"roles": []},
    {"roles": ["operator", "integration"]},
    {"groups": ["Reporting"]},
    {"active": False},
    {"active": True},
    {"valid_from": "2020-01-01T00:00:00Z"},
    {"valid_to": "2099-01-01T00:00:00Z"},
    {"valid_to": None},
    {"email": "me@example.com", "roles": ["admin"]},
]


async def test_nobody_changes_their_own_rights_or_validity(api: Api) -> None:
    operator_id, operator_key = await _operator(api)
    for user_id, key in ((1, api.admin_key), (operator_id, operator_key)):
        before = (await api.client.get(f"{USERS}/{user_id}", headers=api.auth(key))).json()
        for change in _SELF_LOCKED:
            response = await api.client.patch(
                f"{USERS}/{user_id}", json=change, headers=api.auth(key)
            )
            assert response.status_code == 403, (user_id, change, response.text)
        after = (await api.client.get(f"{USERS}/{user_id}", headers=api.auth(key))).json()
        assert after == before


async def test_everybody_may_change_their_own_email_and_password(api: Api) -> None:
    operator_id, operator_key = await _operator(api)
    for user_id, key, login in ((operator_id, operator_key, "opal"), (1, api.admin_key, "root")):
        response = await api.client.patch(
            f"{USERS}/{user_id}",
            json={"email": f"{login}@example.com", "password": NEW_PASSWORD},
            headers=api.auth(key),
        )
        assert response.status_code == 200, response.text
        assert response.json()["email"] == f"{login}@example.com"
        await api.login(login, NEW_PASSWORD)


async def test_nobody_deletes_themselves(api: Api) -> None:
    operator_id, operator_key = await _operator(api)
    for user_id, key in ((1, api.admin_key), (operator_id, operator_key)):
        response = await api.client.delete(f"{USERS}/{user_id}", headers=api.auth(key))
        assert response.status_code == 403, response.text
        assert (await api.client.get(CURRENT_KEY, headers=api.auth(key))).status_code == 200


async def test_mass_assignment_is_refused_naming_every_unknown_field(api: Api) -> None:
    admin = api.auth(api.admin_key)
    created = await api.client.post(
        USERS,
        json={
            "login": "mallory",
            "password": USER_PASSWORD,
            "is_admin": True,
            "password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "security_version": 0,
        },
        headers=admin,
    )
    assert created.status_code == 422, created.text
    assert created.headers["content-type"] == "application/problem+json"
    assert _fields_in(created) == {"is_admin", "password_hash", "security_version"}
    assert await _logins(api) == {"root"}

    plain = await api.create_user("plain")
    for change in ({"id": 1}, {"created_on": "2020-01-01T00:00:00Z", "email": "p@example.com"}):
        response = await api.client.patch(f"{USERS}/{plain}", json=change, headers=admin)
        assert response.status_code == 422, response.text
        assert _fields_in(response) == set(change) - {"email"}
    after = (await api.client.get(f"{USERS}/{plain}", headers=admin)).json()
    assert after["email"] is None

    not_an_object = await api.client.post(USERS, json=["login", "mallory"], headers=admin)
    assert not_an_object.status_code == 422


async def test_a_duplicate_login_is_a_conflict_naming_login(api: Api) -> None:
    admin = api.auth(api.admin_key)
    await api.create_user("carol")
    dave = await api.create_user("dave")
    again = await api.client.post(
        USERS, json={"login": "carol", "password": USER_PASSWORD}, headers=admin
    )
    assert again.status_code == 409, again.text
    assert _fields_in(again) == {"login"}
    renamed = await api.client.patch(f"{USERS}/{dave}", json={"login": "carol"}, headers=admin)
    assert renamed.status_code == 409, renamed.text
    assert _fields_in(renamed) == {"login"}
    assert (await api.client.get(f"{USERS}/{dave}", headers=admin)).json()["login"] == "dave"


_INVALID: list[tuple[dict[str, object], set[str]]] = [
    ({"email": "not-an-address"}, {"email"}),
    ({"email": "a@" + "b" * 300 + ".example"}, {"email"}),
    ({"phone": "call me"}, {"phone"}),
    ({"timezone": "Mars/Olympus_Mons"}, {"timezone"}),
    ({"timezone": "../../etc/passwd"}, {"timezone"}),
    ({"password": "short"}, {"password"}),
    ({"password": None}, {"password"}),
    ({"active": "yes"}, {"active"}),
    ({"roles": ["wizard"]}, {"roles"}),
    ({"roles": "admin"}, {"roles"}),
    ({"groups": ["Nobody"]}, {"groups"}),
    ({"valid_from": "yesterday"}, {"valid_from"}),
    ({"valid_to": 20270101}, {"valid_to"}),
    ({"valid_to": "0001-01-01T00:00:00"}, {"valid_to"}),
    ({"valid_from": "9999-12-31T23:59:59Z"}, {"valid_from"}),
    ({"valid_to": "2026-03-29T02:30:00"}, {"valid_to"}),  # skipped by DST in Prague
    (
        {"valid_from": "2027-01-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"},
        {"valid_to"},
    ),
    ({"email": "x", "timezone": "Nowhere", "bogus": 1}, {"email", "timezone", "bogus"}),
]


async def test_invalid_input_is_422_naming_the_field(api: Api) -> None:
    admin = api.auth(api.admin_key)
    plain = await api.create_user("plain")
    before = (await api.client.get(f"{USERS}/{plain}", headers=admin)).json()
    for body, fields in _INVALID:
        created = await api.client.post(
            USERS, json={"login": "erin", "password": USER_PASSWORD, **body}, headers=admin
        )
        assert created.status_code == 422, (body, created.text)
        assert _fields_in(created) == fields, body
        changed = await api.client.patch(f"{USERS}/{plain}", json=body, headers=admin)
        assert changed.status_code == 422, (body, changed.text)
        assert _fields_in(changed) == fields, body
    assert await _logins(api) == {"root", "plain"}
    assert (await api.client.get(f"{USERS}/{plain}", headers=admin)).json() == before


async def test_a_login_is_required_and_well_formed(api: Api) -> None:
    admin = api.auth(api.admin_key)
    for body in ({}, {"login": "ab"}, {"login": " spaced "}, {"login": "x" * 151}):
        response = await api.client.post(USERS, json=body, headers=admin)
        assert response.status_code == 422, response.text
        assert _fields_in(response) == {"login"}


async def test_a_window_patched_against_the_stored_bound_is_checked(api: Api) -> None:
    admin = api.auth(api.admin_key)
    user_id = await api.create_user("erin", valid_from="2026-06-01T00:00:00Z")
    response = await api.client.patch(
        f"{USERS}/{user_id}", json={"valid_to": "2026-05-01T00:00:00Z"}, headers=admin
    )
    assert response.status_code == 422, response.text
    assert _fields_in(response) == {"valid_to"}


async def test_validity_is_read_and_shown_in_the_callers_zone(api: Api) -> None:
    admin = api.auth(api.admin_key)
    created = await api.client.post(
        USERS,
        json={
            "login": "erin",
            "valid_from": "2026-07-01T09:00:00",  # naive: the admin's zone, Europe/Prague
            "valid_to": "2027-01-15T09:00:00",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert created.json()["valid_from"] == "2026-07-01T09:00:00+02:00"
    assert created.json()["valid_to"] == "2027-01-15T09:00:00+01:00"

    async with api.db() as services:
        users = services.schema.system.users
        async with services.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(users.c.valid_from, users.c.valid_to).where(users.c.id == user_id)
                )
            ).one()
    assert row.valid_from == dt.datetime(2026, 7, 1, 7, 0, tzinfo=dt.UTC)
    assert row.valid_to == dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)

    _, key = await _operator(api, "nyc.ops", timezone="America/New_York")
    seen = (await api.client.get(f"{USERS}/{user_id}", headers=api.auth(key))).json()
    assert seen["valid_from"] == "2026-07-01T03:00:00-04:00"
    assert seen["valid_to"] == "2027-01-15T03:00:00-05:00"

    changed = await api.client.patch(
        f"{USERS}/{user_id}",
        json={"valid_to": "2027-01-15T12:00:00"},  # naive: the operator's zone
        headers=api.auth(key),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["valid_to"] == "2027-01-15T12:00:00-05:00"
    again = (await api.client.get(f"{USERS}/{user_id}", headers=admin)).json()
    assert again["valid_to"] == "2027-01-15T18:00:00+01:00"

    explicit = await api.client.patch(
        f"{USERS}/{user_id}", json={"valid_to": "2027-01-15T12:00:00Z"}, headers=admin
    )
    assert explicit.json()["valid_to"] == "2027-01-15T13:00:00+01:00"


async def test_paging_is_bounded(api: Api) -> None:
    admin = api.auth(api.admin_key)
    for login in ("u-one", "u-two", "u-three"):
        await api.create_user(login)

    async def page(query: str) -> list[str]:
        response = await api.client.get(f"{USERS}?{query}", headers=admin)
        assert response.status_code == 200, response.text
        return [u["login"] for u in response.json()]

    assert await page("_limit=2") == ["root", "u-one"]
    assert await page("_limit=2&_offset=2") == ["u-two", "u-three"]
    assert await page("_offset=4") == []
    assert await page("_limit=1000") == ["root", "u-one", "u-two", "u-three"]
    for query in ("_limit=0", "_limit=1001", "_limit=-1", "_offset=-1", "_limit=many"):
        response = await api.client.get(f"{USERS}?{query}", headers=admin)
        assert response.status_code in {400, 422}, (query, response.text)
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("change", "method"),
    [
        (None, "DELETE"),
        ({"active": False}, "PATCH"),
        ({"roles": []}, "PATCH"),
        ({"valid_to": "2020-01-01T00:00:00Z"}, "PATCH"),
    ],
    ids=["deleted", "deactivated", "roles-removed", "window-ended"],
)
async def test_a_change_applies_to_the_users_keys_on_the_next_request(
    api: Api, change: dict[str, object] | None, method: str
) -> None:
    user_id = await api.create_user("carol", roles=["integration"])
    key = await api.login("carol")
    for _ in range(2):  # the second answer may come from the cached key snapshot
        assert (await api.client.get(CURRENT_KEY, headers=api.auth(key))).status_code == 200
    response = await api.client.request(
        method, f"{USERS}/{user_id}", json=change, headers=api.auth(api.admin_key)
    )
    assert response.status_code in {200, 204}, response.text
    assert (await api.client.get(CURRENT_KEY, headers=api.auth(key))).status_code == 401


async def test_the_body_is_documented_with_every_field(api: Api) -> None:
    openapi = (await api.client.get("/api/v1/openapi.json")).json()
    schemas = openapi["components"]["schemas"]
    for method in ("post", "patch"):
        path = "/api/v1/users" if method == "post" else "/api/v1/users/{user_id}"
        body = openapi["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert body["schema"] == {"$ref": "#/components/schemas/UserIn"}
    assert set(schemas["UserIn"]["properties"]) == {
        "login", "email", "phone", "password", "timezone",
        "valid_from", "valid_to", "active", "roles", "groups",
    }  # fmt: skip
    assert "password" not in schemas["UserView"]["properties"]
