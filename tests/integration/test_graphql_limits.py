"""GraphQL limits and introspection (issue 7, points 4 and 5), over HTTP on SQLite.

Every refused operation is refused before it runs: no statement reaches a record table
(`c_...`) while it is answered. Depth (with introspection bounded apart), aliases
counted after fragment expansion, tokens, batches, the `limit` argument; introspection
and its SDL only for those holding the configured permission, and no "Did you mean"
suggestions for the others; `gateway schema export`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from graphql import get_introspection_query
from httpx import Response

from gateway.settings import Settings
from tests.conftest import RECORD_TABLES, Api, Backend, make_settings, start_api, statements_on
from tests.integration.test_accounts import outbox_texts

GRAPHQL = "/graphql"
SDL = "/graphql/schema.graphql"
PROBLEM_JSON = "application/problem+json"
SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

running_api: Callable[[Settings], AbstractAsyncContextManager[Api]] = asynccontextmanager(start_api)

ORG_TENANT = """
[tenant]
name = "Org chart"
default_timezone = "UTC"
multiple_value_shape = "array"

[types.Person]
label = "name"

[types.Person.properties]
name = { kind = "string", required = true }
manager = { kind = "reference", to = "Person" }
"""
"""A type that refers to itself: the shape that lets a query nest without end."""


# --- helpers ------------------------------------------------------------------------


async def _gql(api: Api, key: str, query: str, variables: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    return await api.client.post(GRAPHQL, json=body, headers=api.auth(key))


def _errors(response: Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("data") is None, body
    errors: list[dict[str, Any]] = body["errors"]
    return errors


def _data(response: Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def _refused(api: Api, query: str, code: str) -> dict[str, Any]:
    """The one error of `query` (as the admin), which must carry `code`; nothing ran."""
    with statements_on(api.app_services, RECORD_TABLES) as statements:
        errors = _errors(await _gql(api, api.admin_key, query))
    assert statements == []
    coded = [e for e in errors if e.get("extensions", {}).get("code") == code]
    assert coded, errors
    return coded[0]


def _with_graphql(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, graphql=dataclasses.replace(settings.graphql, **changes))


def _nested(field: str, depth: int, leaf: str) -> str:
    """`field { field { ... leaf } }`: `depth` fields on the longest path, leaf included."""
    return f"{field} {{ " * (depth - 1) + leaf + " }" * (depth - 1)


@pytest.fixture
async def org(backend: Backend, cache_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    """A gateway on `ORG_TENANT`, with a chain of three managers."""
    tenant_file = tmp_path / "org.toml"
    tenant_file.write_text(ORG_TENANT)
    async with running_api(make_settings(backend, cache_url, tmp_path, tenant_file)) as api:
        manager = None
        for name in ("Ada", "Bea", "Cy"):
            response = await api.client.post(
                "/api/v1/collections/Person",
                json={"name": name, "manager": manager},
                headers=api.auth(api.admin_key),
            )
            assert response.status_code == 201, response.text
            manager = response.json()["data"]["id"]
        yield api


# --- depth --------------------------------------------------------------------------


@SQLITE
async def test_a_deep_query_is_refused_before_it_runs(org: Api) -> None:
    # `persons` and `items` take two of the ten fields allowed by default.
    at_the_limit = "{ persons { items { " + _nested("manager", 8, "name") + " } } }"
    too_deep = "{ persons { items { " + _nested("manager", 9, "name") + " } } }"
    assert _data(await _gql(org, org.admin_key, at_the_limit))["persons"]["items"]
    error = await _refused(org, too_deep, "query_too_deep")
    assert error["message"] == "The query is 11 fields deep; at most 10 are allowed."
    assert error["extensions"] == {"code": "query_too_deep", "limit": 10}

    # Fragments do not hide depth.
    through_fragments = (
        "{ persons { items { ...Chain } } }\n"
        "fragment Chain on Person { " + _nested("manager", 5, "...Deeper") + " }\n"
        "fragment Deeper on Person { " + _nested("manager", 5, "name") + " }"
    )
    await _refused(org, through_fragments, "query_too_deep")

    # Deeper than graphql-core's parser goes: the same code.
    unparsable = "{ persons { items { " + _nested("manager", 300, "name") + " } } }"
    error = await _refused(org, unparsable, "query_too_deep")
    assert error["message"].startswith("The document nests too deeply to be parsed")


@SQLITE
async def test_deep_introspection_is_refused_and_the_standard_query_passes(api: Api) -> None:
    standard = _data(await _gql(api, api.admin_key, get_introspection_query(descriptions=True)))
    names = {t["name"] for t in standard["__schema"]["types"]}
    assert {"Company", "DealStatus"} <= names

    # Depth beneath `__schema` escapes strawberry's QueryDepthLimiter: not these limits.
    of_types = _nested("ofType", 20, "name")
    deep = (
        f"{{ companies {{ total }} __schema {{ types {{ fields {{ type {{ {of_types} }} }} }} }} }}"
    )
    error = await _refused(api, deep, "query_too_deep")
    assert error["message"] == "The query introspects 24 fields deep; at most 15 are allowed."

    # graphql-core's own rule against `fields { type { fields ...` gets the same code.
    cycling = (
        "{ companies { total } __schema { types { fields { type { fields { type "
        "{ fields { type { fields { name } } } } } } } } } }"
    )
    await _refused(api, cycling, "query_too_deep")


# --- aliases --------------------------------------------------------------------------


@SQLITE
async def test_aliases_are_counted_after_fragment_expansion(api: Api) -> None:
    direct = "{ " + " ".join(f"a{i}: companies {{ total }}" for i in range(100)) + " }"
    error = await _refused(api, direct, "too_many_aliases")
    assert error["message"] == (
        "The query uses 100 aliases (counted after fragment expansion); at most 30 are allowed."
    )
    assert error["extensions"] == {"code": "too_many_aliases", "limit": 30}

    # Ten aliases, spread ten times through two fragments: 100 after expansion, though
    # the document spells only ten.
    ten = " ".join(f"a{i}: companies {{ total }}" for i in range(10))
    spread = (
        "query Spread { ...Ten ...Ten ...Five }\n"
        "fragment Five on Query { ...Ten ...Ten ...Ten ...Ten ...Ten ...Four }\n"
        "fragment Four on Query { ...Ten ...Ten ...Ten }\n"
        f"fragment Ten on Query {{ {ten} }}"
    )
    error = await _refused(api, spread, "too_many_aliases")
    assert error["message"].startswith("Query 'Spread' uses 100 aliases")

    # Spreads of spreads multiply: counted without walking each copy, and refused.
    doubling = "".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(60))
    doubling = "{ ...F0 }\n" + doubling + "fragment F60 on Query { a: companies { total } }"
    error = await _refused(api, doubling, "too_many_aliases")
    assert "over 1000000000 aliases" in error["message"]

    # Under the limit, with repeated spreads, it runs (3 x 8 = 24 aliases).
    eight = " ".join(f"b{i}: companies(limit: {i + 1}) {{ total }}" for i in range(8))
    fine = (
        "{ ...Eight ...Again }\n"
        "fragment Again on Query { ...Eight ...Eight }\n"
        f"fragment Eight on Query {{ {eight} }}"
    )
    with statements_on(api.app_services, RECORD_TABLES) as statements:
        data = _data(await _gql(api, api.admin_key, fine))
    assert data == {f"b{i}": {"total": None} for i in range(8)}
    assert statements  # it ran


@SQLITE
async def test_challenge_codes_sent_as_aliases_are_tried_one_at_a_time(api: Api) -> None:
    """Mutations run one after the other, and a wrong answer is an error on a non-null
    field: it ends the operation. Many aliased guesses cost one request per guess."""
    await api.create_user("desk", roles=["registrar", "integration"])
    desk = await api.login("desk")
    registered = _data(
        await _gql(
            api,
            desk,
            """mutation { register(
                 user: {login: "newbie", password: "a-long-password",
                        email: "newbie@example.com", roles: ["integration"]},
                 challenge: {methods: [email_code]}) { challenge_id } }""",
        )
    )
    challenge_id = registered["register"]["challenge_id"]
    async with api.db() as db:
        texts = await outbox_texts(db, "email", "newbie@example.com")
    code = re.findall(r"\b\d{6,10}\b", texts[-1])[0]
    guesses = [f"{n:0{len(code)}d}" for n in range(1, 8) if f"{n:0{len(code)}d}" != code][:5]

    def attempt(answer: str) -> str:
        return (
            f'challenge(challengeId: "{challenge_id}", method: "email_code", code: "{answer}") '
            "{ activated }"
        )

    aliased = " ".join(f"g{i}: {attempt(guess)}" for i, guess in enumerate(guesses))
    errors = _errors(await _gql(api, desk, f"mutation {{ {aliased} right: {attempt(code)} }}"))
    assert [(e["path"], e["extensions"]["errors"][0]["message"]) for e in errors] == [
        (["g0"], "wrong; 4 attempts left")
    ]
    # The other aliases never ran: the next guess is the second one counted.
    errors = _errors(await _gql(api, desk, f"mutation {{ {attempt(guesses[1])} }}"))
    assert errors[0]["extensions"]["errors"][0]["message"] == "wrong; 3 attempts left"
    answered = _data(await _gql(api, desk, f"mutation {{ {attempt(code)} }}"))
    assert answered == {"challenge": {"activated": True}}


# --- tokens, batches, `limit` ---------------------------------------------------------------


@SQLITE
async def test_a_huge_token_count_is_refused_before_parsing_ends(api: Api) -> None:
    huge = "{ companies { total } " + "__typename " * 5000 + "}"
    error = await _refused(api, huge, "too_many_tokens")
    assert error["message"] == "The document has more than 2000 tokens; at most 2000 are allowed."
    assert error["extensions"] == {"code": "too_many_tokens", "limit": 2000}


@SQLITE
async def test_batches_are_a_400_problem(api: Api) -> None:
    batch = [{"query": "{ companies { total } }"}, {"query": "{ companies { total } }"}]
    with statements_on(api.app_services, RECORD_TABLES) as statements:
        response = await api.client.post(GRAPHQL, json=batch, headers=api.auth(api.admin_key))
    assert statements == []
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    problem = response.json()
    assert problem["type"].endswith("/batching_not_supported")
    assert "one operation per request" in problem["detail"]
    # strawberry's other refusals of a request are problems too.
    empty = await api.client.post(GRAPHQL, json={}, headers=api.auth(api.admin_key))
    assert empty.status_code == 400
    assert empty.headers["content-type"].startswith(PROBLEM_JSON)


@SQLITE
async def test_the_limit_argument_is_bounded_with_a_clear_error(api: Api) -> None:
    with statements_on(api.app_services, RECORD_TABLES) as statements:
        errors = _errors(await _gql(api, api.admin_key, "{ companies(limit: 5000) { total } }"))
    assert statements == []
    assert errors[0]["extensions"] == {
        "code": "invalid",
        "errors": [{"field": "limit", "message": "a whole number from 1 to 1000"}],
    }


# --- introspection per user ---------------------------------------------------------------


@SQLITE
async def test_introspection_only_for_holders_of_the_permission(settings: Settings) -> None:
    async with running_api(_with_graphql(settings, introspection_permission="manageUsers")) as api:
        await api.create_user("dev", roles=["integration"])  # useApi, not manageUsers
        dev = await api.login("dev")
        introspection = get_introspection_query(descriptions=True)

        assert _data(await _gql(api, api.admin_key, introspection))["__schema"]["types"]
        refused = _errors(await _gql(api, dev, introspection))
        assert refused == [
            {
                "message": "Introspection is not allowed for this user: it needs the "
                "manageUsers permission.",
                "locations": refused[0]["locations"],
                "extensions": {"code": "introspection_disabled"},
            }
        ]
        single_type = _errors(await _gql(api, dev, '{ __type(name: "Company") { name } }'))
        assert single_type[0]["extensions"]["code"] == "introspection_disabled"
        assert _data(await _gql(api, dev, "{ __typename }")) == {"__typename": "Query"}

        # Suggestions would spell the schema out: the admin gets them, dev does not.
        typo = "{ companies { items { nme } } }"
        admin_typo = _errors(await _gql(api, api.admin_key, typo))[0]["message"]
        dev_typo = _errors(await _gql(api, dev, typo))[0]["message"]
        assert admin_typo == "Cannot query field 'nme' on type 'Company'. Did you mean 'name'?"
        assert dev_typo == "Cannot query field 'nme' on type 'Company'."
        # Also in values checked while the operation starts (variables).
        variable = "query($s: DealStatus!) { deals(where: {status: {eq: $s}}) { total } }"
        admin_value = _errors(await _gql(api, api.admin_key, variable, {"s": "opne"}))
        dev_value = _errors(await _gql(api, dev, variable, {"s": "opne"}))
        assert "Did you mean the enum value 'open'?" in admin_value[0]["message"]
        assert "Did you mean" not in dev_value[0]["message"]
        assert dev_value[0]["message"] == admin_value[0]["message"].replace(
            " Did you mean the enum value 'open'?", ""
        )
        # The validation cache keeps the two users' answers apart (the same text again).
        assert _errors(await _gql(api, dev, typo))[0]["message"] == dev_typo
        assert _errors(await _gql(api, api.admin_key, typo))[0]["message"] == admin_typo


@SQLITE
async def test_the_sdl_is_served_to_those_who_may_introspect(settings: Settings) -> None:
    async with running_api(_with_graphql(settings, introspection_permission="manageUsers")) as api:
        await api.create_user("dev", roles=["integration"])
        dev = await api.login("dev")

        served = await api.client.get(SDL, headers=api.auth(api.admin_key))
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "text/plain; charset=utf-8"
        assert served.headers["cache-control"] == "private, no-cache"
        assert "type Company {" in served.text
        assert "enum DealStatus {" in served.text
        etag = served.headers["etag"]
        again = await api.client.get(
            SDL, headers={**api.auth(api.admin_key), "If-None-Match": etag}
        )
        assert again.status_code == 304
        assert again.content == b""

        missing = await api.client.get(SDL)
        assert missing.status_code == 401
        assert missing.headers["content-type"].startswith(PROBLEM_JSON)
        forbidden = await api.client.get(SDL, headers=api.auth(dev))
        assert forbidden.status_code == 403
        assert "manageUsers" in forbidden.json()["detail"]

    # By default (useApi) every API user may read it.
    async with running_api(settings) as api:
        dev = await api.login("dev")
        assert (await api.client.get(SDL, headers=api.auth(dev))).status_code == 200


# --- the command line -----------------------------------------------------------------------


def test_schema_export_writes_the_tenants_sdl(tmp_path: Path) -> None:
    tenant_file = tmp_path / "org.toml"
    tenant_file.write_text(ORG_TENANT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATA_DIR=str(tmp_path / "data"),
        GATEWAY_TENANT_FILE=str(tenant_file),
        GATEWAY_DATABASE_URL="postgresql+asyncpg://nobody@/nowhere?host=/nonexistent",
    )
    output = tmp_path / "schema.graphql"
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "schema", "export", "--output", str(output)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sdl = output.read_text()
    assert "type Person {" in sdl
    assert "  manager: Person" in sdl
    assert "persons(" in sdl
    assert not (tmp_path / "data").exists()  # no database was opened

    demo = subprocess.run(
        [sys.executable, "-m", "gateway", "schema", "export"],
        env={k: v for k, v in env.items() if k != "GATEWAY_TENANT_FILE"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    assert "type Company {" in demo.stdout
