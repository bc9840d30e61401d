"""REST and GraphQL behind one interface, for the contract suite (`test_contract.py`).

`Rest` and `GraphQL` take the same calls on a tenant's collections (`list`, `get`,
`get_by`, `create`, `update`, `replace`, `delete`) as one caller and answer an `Outcome`
that both can be compared in: records as REST renders them, the page's `total` and
`next`, the gateway's error code with the fields it names, and `X-Cache`.

GraphQL documents are built from the call: the selection is every field the caller may
read (a reference as `{ id }`, a file as its object), inputs travel as variables, a
REST filter in the JSON form becomes the typed `where` (dotted paths nested).

What is normalised, because the two transports say the same thing differently:

- a GraphQL reference object `{id: 7}` is the id `7`, as REST renders it;
- GraphQL answers a record that is not there (or not readable) with null: `not_found`;
- GraphQL refuses some input itself, before any resolver runs (a field its input type
  lacks, an enum value it does not know): code `graphql`, the field taken from its message;
- field names of errors lose REST's `_` and the position (`_filter (position 4)` →
  `filter`), and GraphQL's `where` is REST's `filter`.

What stays apart, for the tests to assert in each form (`Outcome.raw`): a hidden field is
left out by REST and a `forbidden` error (with partial data) when GraphQL selects it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from httpx import Response

from resolvers.principal import system_principal
from resolvers.tenant import Kind, Tenant
from resolvers.values import SYSTEM_PROPERTIES
from schema.types import lower_camel, pascal, plural
from tests.conftest import Api

__all__ = [
    "TRANSPORTS",
    "Caller",
    "GraphQL",
    "Outcome",
    "Rest",
    "Transport",
    "caller",
    "connect",
    "nested_where",
    "records",
]

COLLECTIONS = "/api/v1/collections"
GRAPHQL = "/graphql"
TRANSPORTS = ("rest", "graphql")
TransportName = Literal["rest", "graphql"]

_FILE = "{ name size content_type sha256 url }"
_LOGIC = ("and", "or")
_GRAPHQL_REFUSALS = (
    re.compile(r"unknown field '(\w+)'"),
    re.compile(r"required field '(\w+)'"),
    re.compile(r"invalid value at \.(\w+)"),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call's answer; equal outcomes mean the transports agreed."""

    data: Any = None
    """A record, a list page's records, or None (a delete, a failure)."""
    total: int | None = None
    next: str | None = None
    error: str | None = None
    """The gateway's code (`invalid`, `not_found`, `forbidden`, ...), or `graphql`."""
    fields: tuple[str, ...] = ()
    """What the error names, sorted."""
    cache: str | None = field(default=None, compare=False)
    """`X-Cache`; compared explicitly by the cache scenarios."""
    raw: Any = field(default=None, compare=False, repr=False)
    """The decoded body, for what each transport says its own way."""

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ids(self) -> list[int]:
        """The ids of a list page, in order."""
        assert self.ok, self.raw
        return [r["id"] for r in self.data]


@dataclass(frozen=True, slots=True)
class Caller:
    """A user's key and the fields its roles hide, per type (what GraphQL must not select)."""

    key: str
    hidden: Mapping[str, frozenset[str]]


def caller(api: Api, key: str, *roles: str) -> Caller:
    """`key`'s caller, whose roles are `roles` (the admin's: `admin`)."""
    tenant: Tenant = api.app_services.tenant
    principal = system_principal(tenant, login="contract", roles=roles or ("admin",))
    hidden = {t.name: principal.on(t.name).hidden for t in tenant.api_types()}
    return Caller(key=key, hidden=hidden)


class Transport(Protocol):
    """The collection calls the contract runs, as one caller."""

    name: TransportName

    async def list(
        self,
        type_name: str,
        *,
        where: Mapping[str, Any] | None = None,
        filter: str | None = None,
        order: Sequence[str] = (),
        limit: int | None = None,
        offset: int | None = None,
        after: str | None = None,
        count: bool = False,
        fields: Sequence[str] | None = None,
        no_cache: bool = False,
    ) -> Outcome: ...

    async def get(self, type_name: str, record_id: int) -> Outcome: ...

    async def get_by(self, type_name: str, prop: str, value: str) -> Outcome: ...

    async def create(self, type_name: str, data: Mapping[str, Any]) -> Outcome: ...

    async def update(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Outcome: ...

    async def replace(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Outcome: ...

    async def delete(self, type_name: str, record_id: int) -> Outcome: ...


def connect(name: str, api: Api, who: Caller) -> Transport:
    """The transport called `name` (`rest` or `graphql`), acting as `who`."""
    if name == "rest":
        return Rest(api, who)
    if name == "graphql":
        return GraphQL(api, who)
    raise ValueError(name)


def _field_name(name: str) -> str:
    """`_filter (position 4)` → `filter`."""
    return name.split(" (", 1)[0].removeprefix("_")


# --- REST ---------------------------------------------------------------------------------


class Rest:
    """`/api/v1/collections`: a text filter as `GET ?_filter=`, the JSON form as SEARCH."""

    name: TransportName = "rest"

    def __init__(self, api: Api, who: Caller) -> None:
        self.api = api
        self.headers = api.auth(who.key)

    async def list(
        self,
        type_name: str,
        *,
        where: Mapping[str, Any] | None = None,
        filter: str | None = None,
        order: Sequence[str] = (),
        limit: int | None = None,
        offset: int | None = None,
        after: str | None = None,
        count: bool = False,
        fields: Sequence[str] | None = None,
        no_cache: bool = False,
    ) -> Outcome:
        path = f"{COLLECTIONS}/{type_name}"
        if where is not None:
            assert filter is None, "REST takes one spelling of a filter"
            body = {
                "filter": where,
                "order": list(order) or None,
                "limit": limit,
                "offset": offset,
                "after": after,
                "fields": None if fields is None else list(fields),
                "count": count or None,
            }
            response = await self.api.client.post(
                f"{path}/search",
                json={k: v for k, v in body.items() if v is not None},
                params={"_noCache": 1} if no_cache else None,
                headers=self.headers,
            )
        else:
            params = {
                "_filter": filter,
                "_order": ",".join(order) or None,
                "_limit": limit,
                "_offset": offset,
                "_after": after,
                "_fields": None if fields is None else ",".join(fields),
                "_count": 1 if count else None,
                "_noCache": 1 if no_cache else None,
            }
            response = await self.api.client.get(
                path,
                params={k: v for k, v in params.items() if v is not None},
                headers=self.headers,
            )
        return self._outcome(response, page=True)

    async def get(self, type_name: str, record_id: int) -> Outcome:
        response = await self.api.client.get(
            f"{COLLECTIONS}/{type_name}/{record_id}", headers=self.headers
        )
        return self._outcome(response)

    async def get_by(self, type_name: str, prop: str, value: str) -> Outcome:
        response = await self.api.client.get(
            f"{COLLECTIONS}/{type_name}/by/{prop}/{value}", headers=self.headers
        )
        return self._outcome(response)

    async def create(self, type_name: str, data: Mapping[str, Any]) -> Outcome:
        response = await self.api.client.post(
            f"{COLLECTIONS}/{type_name}", json=dict(data), headers=self.headers
        )
        return self._outcome(response)

    async def update(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Outcome:
        response = await self.api.client.patch(
            f"{COLLECTIONS}/{type_name}/{record_id}", json=dict(data), headers=self.headers
        )
        return self._outcome(response)

    async def replace(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Outcome:
        response = await self.api.client.put(
            f"{COLLECTIONS}/{type_name}/{record_id}", json=dict(data), headers=self.headers
        )
        return self._outcome(response)

    async def delete(self, type_name: str, record_id: int) -> Outcome:
        response = await self.api.client.delete(
            f"{COLLECTIONS}/{type_name}/{record_id}", headers=self.headers
        )
        return self._outcome(response)

    @staticmethod
    def _outcome(response: Response, *, page: bool = False) -> Outcome:
        cache = response.headers.get("x-cache")
        if response.status_code == 204:
            return Outcome(cache=cache)
        body = response.json()
        if response.status_code in {200, 201}:
            if not page:
                return Outcome(data=body["data"], cache=cache, raw=body)
            meta = body["meta"]
            return Outcome(
                data=body["data"],
                total=meta.get("total"),
                next=meta.get("next"),
                cache=cache,
                raw=body,
            )
        assert response.headers["content-type"] == "application/problem+json", response.text
        named = sorted({_field_name(e["field"]) for e in body.get("errors", ())})
        return Outcome(
            error=body["type"].rsplit("/", 1)[-1], fields=tuple(named), cache=cache, raw=body
        )


# --- GraphQL ------------------------------------------------------------------------------


class GraphQL:
    """`/graphql` over POST: one root field per call, every visible field selected."""

    name: TransportName = "graphql"

    def __init__(self, api: Api, who: Caller) -> None:
        self.api = api
        self.who = who
        self.headers = api.auth(who.key)
        self.tenant: Tenant = api.app_services.tenant

    async def list(
        self,
        type_name: str,
        *,
        where: Mapping[str, Any] | None = None,
        filter: str | None = None,
        order: Sequence[str] = (),
        limit: int | None = None,
        offset: int | None = None,
        after: str | None = None,
        count: bool = False,
        fields: Sequence[str] | None = None,
        no_cache: bool = False,
    ) -> Outcome:
        root = plural(lower_camel(type_name))
        document = (
            f"query($where: {type_name}Where, $filter: String, $order: [{type_name}Order!], "
            "$limit: Int, $offset: Int, $after: String, $count: Boolean!, $noCache: Boolean!) "
            f"{{ {root}(where: $where, filter: $filter, order: $order, limit: $limit, "
            "offset: $offset, after: $after, count: $count, noCache: $noCache) "
            f"{{ items {{ {self._selection(type_name, fields)} }} total next }} }}"
        )
        variables = {
            "where": None if where is None else nested_where(where),
            "filter": filter,
            "order": [{"field": n.removeprefix("-"), "desc": n.startswith("-")} for n in order]
            or None,
            "limit": limit,
            "offset": offset,
            "after": after,
            "count": count,
            "noCache": no_cache,
        }
        return await self._call(root, document, variables, page=True)

    async def get(
        self, type_name: str, record_id: int, *, fields: Sequence[str] | None = None
    ) -> Outcome:
        root = lower_camel(type_name)
        document = (
            f"query($id: BigInt!) {{ {root}(id: $id) {{ {self._selection(type_name, fields)} }} }}"
        )
        return await self._call(root, document, {"id": record_id})

    async def get_by(self, type_name: str, prop: str, value: str) -> Outcome:
        root = f"{lower_camel(type_name)}By{pascal(prop)}"
        document = (
            f"query($value: String!) {{ {root}(value: $value) {{ {self._selection(type_name)} }} }}"
        )
        return await self._call(root, document, {"value": value})

    async def create(self, type_name: str, data: Mapping[str, Any]) -> Outcome:
        root = f"create{type_name}"
        document = (
            f"mutation($data: {type_name}Input!) {{ {root}(data: $data) "
            f"{{ {self._selection(type_name)} }} }}"
        )
        return await self._call(root, document, {"data": dict(data)})

    async def update(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Outcome:
        return await self._write("update", f"{type_name}Patch", type_name, record_id, data)

    async def replace(self, type_name: str, record_id: int, data: Mapping[str, Any]) -> Outcome:
        return await self._write("replace", f"{type_name}Input", type_name, record_id, data)

    async def delete(self, type_name: str, record_id: int) -> Outcome:
        root = f"delete{type_name}"
        document = f"mutation($id: BigInt!) {{ {root}(id: $id) }}"
        return await self._call(root, document, {"id": record_id})

    async def _write(
        self, verb: str, input_type: str, type_name: str, record_id: int, data: Mapping[str, Any]
    ) -> Outcome:
        root = f"{verb}{type_name}"
        document = (
            f"mutation($id: BigInt!, $data: {input_type}!) {{ {root}(id: $id, data: $data) "
            f"{{ {self._selection(type_name)} }} }}"
        )
        return await self._call(root, document, {"id": record_id, "data": dict(data)})

    def _selection(self, type_name: str, fields: Sequence[str] | None = None) -> str:
        """Every field the caller may read (or `id` and `fields`), objects expanded."""
        type_def = self.tenant.types[type_name]
        if fields is None:
            hidden = self.who.hidden.get(type_name, frozenset())
            names = [*SYSTEM_PROPERTIES, *(p.name for p in type_def.properties.values() if p.api)]
            names = [n for n in names if n not in hidden]
        else:
            names = ["id", *(n for n in fields if n != "id")]
        selected = []
        for name in names:
            prop = type_def.properties.get(name)
            if prop is not None and prop.kind is Kind.REFERENCE:
                selected.append(f"{name} {{ id }}")
            elif prop is not None and prop.kind is Kind.FILE:
                selected.append(f"{name} {_FILE}")
            else:
                selected.append(name)
        return " ".join(selected)

    async def _call(
        self, root: str, document: str, variables: dict[str, Any], *, page: bool = False
    ) -> Outcome:
        response = await self.api.client.post(
            GRAPHQL, json={"query": document, "variables": variables}, headers=self.headers
        )
        cache = response.headers.get("x-cache")
        assert response.status_code == 200, response.text
        body = response.json()
        value: Any = (body.get("data") or {}).get(root)
        errors: list[dict[str, Any]] = body.get("errors", [])
        if errors:
            return _refusal(errors, value, cache, body, page=page)
        if page:
            return Outcome(
                data=records(value["items"]),
                total=value["total"],
                next=value["next"],
                cache=cache,
                raw=body,
            )
        if value is None:
            return Outcome(error="not_found", cache=cache, raw=body)
        return Outcome(data=None if value is True else records(value), cache=cache, raw=body)


def _refusal(
    errors: list[dict[str, Any]], value: Any, cache: str | None, body: Any, *, page: bool
) -> Outcome:
    """The outcome of an answer with errors: the gateway's code, else GraphQL's own refusal."""
    codes = {e.get("extensions", {}).get("code") for e in errors} - {None}
    if not codes:
        named = {
            m.group(1) for e in errors for r in _GRAPHQL_REFUSALS if (m := r.search(e["message"]))
        }
        return Outcome(error="graphql", fields=tuple(sorted(named)), cache=cache, raw=body)
    assert len(codes) == 1, errors
    named = set()
    for error in errors:
        listed = error.get("extensions", {}).get("errors")
        if listed:
            named.update(_field_name(e["field"]) for e in listed)
        elif len(error.get("path") or ()) > 1 and isinstance(error["path"][-1], str):
            named.add(error["path"][-1])  # a field of a record (a hidden one)
    named = {"filter" if n == "where" else n for n in named}
    data = None
    if isinstance(value, dict):
        data = records(value["items"] if page else value)
    return Outcome(data=data, error=codes.pop(), fields=tuple(sorted(named)), cache=cache, raw=body)


def records(value: Any) -> Any:
    """GraphQL records as REST renders them: a reference object `{id}` is its id."""
    if isinstance(value, list):
        return [records(item) for item in value]
    return {name: _reference_id(item) for name, item in value.items()}


def _reference_id(value: Any) -> Any:
    if isinstance(value, list):
        return [_reference_id(item) for item in value]
    if isinstance(value, dict) and set(value) == {"id"}:
        return value["id"]
    return value


def nested_where(node: Mapping[str, Any]) -> dict[str, Any]:
    """A filter's JSON form as GraphQL's `where`: `{"company.name": f}` → `{company: {name: f}}`."""
    nested: dict[str, Any] = {}
    for key, value in node.items():
        if key in _LOGIC:
            nested[key] = [nested_where(item) for item in value]
        elif key == "not":
            nested[key] = nested_where(value)
        elif "." in key:
            head, rest = key.split(".", 1)
            nested[head] = {**nested.get(head, {}), **nested_where({rest: value})}
        else:
            nested[key] = value
    return nested
