"""Plain reads answered without execution (`schema.prepared`), on both backends.

A plain read must answer exactly what executing it answers: each query below is sent
twice over HTTP, once as written (the prepared path) and once with `@include(if: true)`
on its first root field, which means the same but is not plain (the full path), and the
two bodies must be equal. `PreparedReads.answer` is also called directly, next to
`schema.execute` on the same services and principal, to show which path answered:
`None` for everything it must leave to execution (errors included).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from resolvers.auth import authenticate
from resolvers.principal import Principal
from resolvers.services import Services
from schema.build import build_schema
from schema.context import GraphQLContext
from schema.limits import Limits, size_rules
from schema.prepared import PreparedReads
from tests.conftest import Api
from tests.integration.test_graphql import _create, _gql, _user

DEAL = "id title status amount expected_close closed_on created_on created_by"

PLAIN = [
    f"{{ deals(order: [{{field: title}}]) {{ items {{ {DEAL} }} }} }}",
    f"{{ deals(where: {{status: {{eq: open}}}}, order: [{{field: amount, desc: true}}], "
    f"limit: 2, count: true) {{ total next items {{ {DEAL} }} }} }}",
    '{ deals(filter: "amount >= 100", offset: 1, order: [{field: id}]) '
    "{ __typename items { __typename id t: title } } }",
    "query Pick($id: BigInt!) { deal(id: $id) { id title amount status } }",
    '{ companyByRegistrationNo(value: "AC-1") { id name employees tags } }',
    "{ deal(id: 999999) { id } }",
    "{ a: deals(limit: 1, order: [{field: id}]) { items { id } } "
    "b: companies(order: [{field: name}]) { items { id name } } }",
    "query Open($s: DealStatus) { deals(where: {status: {eq: $s}}, order: [{field: id}]) "
    "{ items { id status } } }",
    "{ deals(order: [{field: id}]) { items { id company { id name tags } } } }",
    "{ deals(order: [{field: id}]) { items { title contacts { full_name company { name } } } } }",
    "query Pick($id: BigInt!) { deal(id: $id) { company { __typename name } contacts { id } } }",
    "{ contacts(order: [{field: id}]) { items { email company { id employees } } } }",
    "{ activities(order: [{field: id}]) { items { subject deal { title contacts { id } } } } }",
]
"""Plain reads of the demo tenant (`$id` and `$s` come from `_variables`)."""

NOT_PLAIN = {
    "fragment": "{ deals { items { ...F } } } fragment F on Deal { id }",
    "directive": "{ deals { items { id @skip(if: false) } } }",
    "reference with arguments": "{ deals { items { id company { id name } } } }".replace(
        "company {", "company @include(if: true) {"
    ),
    "mutation": 'mutation { createCompany(data: {name: "X"}) { id } }',
    "audited get": "{ activity(id: 1) { id } }",
    "unknown field": "{ deals { items { nope } } }",
    "bad argument": "{ deals(limit: 100000) { items { id } } }",
    "syntax": "{ deals { items { id }",
}


@pytest.fixture
async def seeded(api: Api) -> dict[str, int]:
    company = await _create(api, "Company", {"name": "Acme", "registration_no": "AC-1"})
    other = await _create(api, "Company", {"name": "Beta", "tags": ["x", "y"], "employees": 9})
    ids = {"company": company, "other": other}
    ids["ann"] = await _create(api, "Contact", {"full_name": "Ann", "company": other})
    ids["bob"] = await _create(api, "Contact", {"full_name": "Bob", "email": "bob@example.com"})
    deals = (("open", "120.50", []), ("won", "80", ["ann", "bob"]), ("open", "900", ["bob"]))
    for i, (status, amount, contacts) in enumerate(deals):
        ids[f"deal{i}"] = await _create(
            api,
            "Deal",
            {
                "title": f"Deal {i}",
                "company": company if i != 2 else other,
                "contacts": [ids[c] for c in contacts],
                "status": status,
                "amount": amount,
                "expected_close": "2026-12",
                "closed_on": "2026-11-28T10:00:00Z",
                "margin_percent": "12.5",
            },
        )
    for subject, done in (("Call", True), ("Mail", False)):
        await _create(
            api,
            "Activity",
            {"subject": subject, "kind": "call", "done": done, "deal": ids["deal1"]},
        )
    return ids


def _variables(ids: dict[str, int]) -> dict[str, Any]:
    return {"id": ids["deal1"], "s": "open"}


def _forced(query: str) -> str:
    """The same query with `@include(if: true)` on its first root field: not plain."""
    opening = query.index("{") + 1
    field = re.compile(r"\s*(\w+\s*:\s*)?\w+(\([^)]*\))?").match(query, opening)
    assert field is not None
    return query[: field.end()] + " @include(if: true)" + query[field.end() :]


async def _body(api: Api, key: str, query: str, variables: dict[str, Any]) -> Any:
    wanted = {k: v for k, v in variables.items() if f"${k}" in query}
    response = await _gql(api, key, query, wanted or None)
    assert response.status_code == 200, response.text
    return response.json()


async def test_plain_reads_answer_what_execution_answers(api: Api, seeded: dict[str, int]) -> None:
    _, reporter = await _user(api, "reporter1", "reporter")
    variables = _variables(seeded)
    for key in (api.admin_key, reporter):
        for query in PLAIN:
            prepared = await _body(api, key, query, variables)
            executed = await _body(api, key, _forced(query), variables)
            assert "errors" not in prepared, (query, prepared)
            assert prepared == executed, query
    # Once more, now from the cache (the bodies and their cuts are remembered).
    again = await _body(api, api.admin_key, PLAIN[1], variables)
    assert again == await _body(api, api.admin_key, _forced(PLAIN[1]), variables)
    assert again["data"]["deals"]["total"] == 2


async def test_the_prepared_path_answers_plain_reads_only(api: Api, seeded: dict[str, int]) -> None:
    async with api.db() as services:
        principal = await authenticate(services, api.admin_key)
        reads = _prepared(services)
        variables = _variables(seeded)
        for query in PLAIN:
            wanted = {k: v for k, v in variables.items() if f"${k}" in query}
            answered = await reads.answer(services, principal, query, None, wanted, fresh=False)
            assert answered is not None, query
            body = answered.body
            executed = await _execute(services, principal, query, wanted)
            assert json.loads(body) == {"data": executed}, query
        for why, query in NOT_PLAIN.items():
            answered = await reads.answer(services, principal, query, None, None, fresh=False)
            assert answered is None, why
        # A variable of the wrong type, an operation name the document lacks.
        typed = "query Pick($id: BigInt!) { deal(id: $id) { id } }"
        assert (
            await reads.answer(services, principal, typed, None, {"id": "x"}, fresh=False) is None
        )
        assert (
            await reads.answer(services, principal, typed, "Other", {"id": 1}, fresh=False) is None
        )


async def test_hidden_fields_are_left_to_execution_and_refused(
    api: Api, seeded: dict[str, int]
) -> None:
    _, reporter_key = await _user(api, "reporter2", "reporter")
    query = f"{{ deal(id: {seeded['deal0']}) {{ id margin_percent }} }}"
    async with api.db() as services:
        reporter = await authenticate(services, reporter_key)
        admin = await authenticate(services, api.admin_key)
        reads = _prepared(services)
        assert await reads.answer(services, reporter, query, None, None, fresh=False) is None
        answered = await reads.answer(services, admin, query, None, None, fresh=False)
        assert answered is not None
        assert json.loads(answered.body)["data"]["deal"]["margin_percent"] == "12.50"
    refused = await _body(api, reporter_key, query, {})
    assert refused["data"] == {"deal": {"id": seeded["deal0"], "margin_percent": None}}
    assert refused["errors"][0]["extensions"]["code"] == "forbidden"


async def test_a_write_is_seen_by_the_next_plain_read(api: Api, seeded: dict[str, int]) -> None:
    query = f"{{ deal(id: {seeded['deal0']}) {{ id title }} }}"
    list_query = "{ deals(order: [{field: id}]) { items { title } } }"
    first = await _body(api, api.admin_key, query, {})
    titles = await _body(api, api.admin_key, list_query, {})
    assert first["data"]["deal"]["title"] == "Deal 0"
    changed = await api.client.patch(
        f"/api/v1/collections/Deal/{seeded['deal0']}",
        json={"title": "Renamed"},
        headers=api.auth(api.admin_key),
    )
    assert changed.status_code == 200, changed.text
    assert (await _body(api, api.admin_key, query, {}))["data"]["deal"]["title"] == "Renamed"
    after = await _body(api, api.admin_key, list_query, {})
    assert [d["title"] for d in after["data"]["deals"]["items"]] == [
        "Renamed",
        *[d["title"] for d in titles["data"]["deals"]["items"][1:]],
    ]


async def test_audited_single_reads_write_one_row_each(api: Api, seeded: dict[str, int]) -> None:
    activity = await _create(
        api, "Activity", {"subject": "Call", "kind": "call", "deal": seeded["deal0"]}
    )
    for _ in range(2):
        body = await _body(api, api.admin_key, f"{{ activity(id: {activity}) {{ id }} }}", {})
        assert body["data"]["activity"] == {"id": activity}
    audit = await api.client.get(
        "/api/v1/admin/audit",
        params={"type": "Activity", "record_id": activity},
        headers=api.auth(api.admin_key),
    )
    assert audit.status_code == 200, audit.text
    assert len(audit.json()["data"]) == 2


def _prepared(services: Services) -> PreparedReads:
    limits = Limits()
    schema = build_schema(services.tenant, limits=limits)
    return PreparedReads(schema, services.tenant, size_rules(limits), max_tokens=limits.max_tokens)


async def _execute(
    services: Services, principal: Principal, query: str, variables: dict[str, Any]
) -> Any:
    schema = build_schema(services.tenant)
    context = GraphQLContext(services=services, principal=principal)
    result = await schema.execute(query, variable_values=variables or None, context_value=context)
    assert result.errors is None, result.errors
    return result.data


async def test_gets_bound_from_their_variables_answer_as_execution_does(
    api: Api, seeded: dict[str, int]
) -> None:
    """A get's key from a variable skips graphql-core's coercion when it is plainly of its
    type; anything else is coerced by graphql-core, or left to execution."""
    by_id = "query G($id: BigInt!) { deal(id: $id) { id title } }"
    by_value = (
        "query B($v: String!) { companyByRegistrationNo(value: $v, noCache: false) { name } }"
    )
    unused = "query U($id: BigInt!, $x: Int) { deal(id: $id) { id } }"
    two = "query T($a: BigInt!, $b: BigInt!) { a: deal(id: $a) { id } b: deal(id: $b) { id } }"
    deal = seeded["deal1"]
    async with api.db() as services:
        principal = await authenticate(services, api.admin_key)
        reads = _prepared(services)
        for query, variables in (
            (by_id, {"id": deal}),
            (by_id, {"id": str(deal)}),
            (by_id, {"id": 0}),
            (by_id, {"id": -5}),
            (by_value, {"v": "AC-1"}),
            (two, {"a": deal, "b": seeded["deal0"]}),
            (by_value, {"v": "nope"}),
        ):
            answered = await reads.answer(services, principal, query, None, variables, fresh=False)
            assert answered is not None, (query, variables)
            executed = await _execute(services, principal, query, variables)
            assert json.loads(answered.body) == {"data": executed}, (query, variables)
        for query, variables in (
            (by_id, {"id": True}),
            (by_id, {"id": 2**63}),
            (by_id, {}),
            (by_value, {"v": 5}),
            (unused, {"id": deal, "x": 3}),  # an unused variable fails validation
        ):
            answered = await reads.answer(services, principal, query, None, variables, fresh=False)
            assert answered is None, (query, variables)


async def test_an_answers_etag_names_its_bodies_in_every_process(
    api: Api, seeded: dict[str, int]
) -> None:
    """`Answer.etag` is made from the operation and the ETags of the bodies it was cut
    from: the same in two processes (two `PreparedReads`), another for another caller, for
    other bodies, and for the same bodies when another root found nothing."""
    two = "query T($a: BigInt!, $b: BigInt!) { a: deal(id: $a) { id } b: deal(id: $b) { id } }"
    one = "query G($id: BigInt!) { deal(id: $id) { id title } }"
    deal, other = seeded["deal1"], seeded["deal0"]
    _, reporter_key = await _user(api, "reporter3", "reporter")
    async with api.db() as services:
        admin = await authenticate(services, api.admin_key)
        reporter = await authenticate(services, reporter_key)
        first, second = _prepared(services), _prepared(services)

        async def etag(reads: PreparedReads, principal: Principal, query: str, **v: int) -> str:
            answered = await reads.answer(services, principal, query, None, v, fresh=False)
            assert answered is not None, (query, v)
            return answered.etag()

        assert await etag(first, admin, one, id=deal) == await etag(second, admin, one, id=deal)
        assert await etag(first, admin, one, id=deal) != await etag(first, reporter, one, id=deal)
        assert await etag(first, admin, one, id=deal) != await etag(first, admin, one, id=other)
        both = await etag(first, admin, two, a=deal, b=other)
        assert both == await etag(second, admin, two, a=deal, b=other)
        # One root finds nothing: the answer (and its ETag) differs by which one.
        first_only = await etag(first, admin, two, a=deal, b=999_999)
        second_only = await etag(first, admin, two, a=999_999, b=deal)
        assert len({both, first_only, second_only}) == 3
