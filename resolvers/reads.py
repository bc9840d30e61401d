"""Reads as every transport serves them: rendered JSON bodies through the response cache.

REST sends these bodies as they are; GraphQL decodes the same bytes. Both therefore
share one cache entry per principal and request shape (DESIGN §7):

- a list body is `{"data": [...], "meta": {...}}`, a single record `{"data": {...}}`;
- the key holds the principal (identity and effective rights) and a canonical hash of
  what the request means — filter tree without source positions, AND/OR operands in a
  fixed order, the order with its implicit `id` tie-break, fields and hide as sets —
  so two spellings of one request share an entry, and two users never do;
- entries depend on the generations of every type their filters and row scopes can
  reach through references (see `ResponseCache`), so a write anywhere they look makes
  them stale at once, on every worker;
- the cache is bypassed when the caller asks (`fresh`), when the request or a row scope
  it applies mentions `$now` (its answer changes by itself), and for single-record
  reads of a type with `read_access_logging`, each of which writes an audit row.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgspec

from resolvers import collections as records
from resolvers import query_grammar as q
from resolvers.audit import record_read
from resolvers.cache import Cached, request_shape_hash
from resolvers.principal import Principal
from resolvers.query_compile import scope_tree
from resolvers.services import Services

__all__ = [
    "MAX_IDS",
    "Transport",
    "by_ids_body",
    "list_body",
    "page_json",
    "record_body",
    "record_by_body",
]

Transport = Literal["rest", "graphql"]

_ENCODER = msgspec.json.Encoder()


def page_json(page: records.Page) -> dict[str, Any]:
    """The `{data, meta}` document of one page (`total` and `next` only when known)."""
    meta: dict[str, Any] = {"limit": page.limit, "offset": page.offset}
    if page.total is not None:
        meta["total"] = page.total
    if page.next is not None:
        meta["next"] = page.next
    return {"data": page.data, "meta": meta}


async def list_body(
    services: Services,
    principal: Principal,
    type_name: str,
    query: records.ListQuery,
    *,
    fresh: bool = False,
) -> Cached:
    """One page of `type_name` as JSON bytes; `fresh` skips the cache (and refreshes nothing)."""
    records.readable_type(services, principal, type_name)

    async def compute() -> bytes:
        page = await records.list_records(services, principal, type_name, query)
        return _ENCODER.encode(page_json(page))

    plan = _plan(services, principal, type_name)
    shape, now = _list_facts(query)
    if fresh or plan.uses_now or now:
        return await services.cache.bypass(principal, compute)
    key = services.cache.type_key(principal, type_name, "list", shape, depends=plan.reach)
    return await services.cache.read(principal, key, compute)


MAX_IDS = records.MAX_LIMIT
"""Ids per `by_ids_body` (a list's largest page, and `query_grammar.MAX_IN`)."""


async def by_ids_body(
    services: Services,
    principal: Principal,
    type_name: str,
    ids: Iterable[int],
    *,
    fresh: bool = False,
) -> Cached:
    """The records of `ids` the principal can read, as one list body (at most `MAX_IDS`).

    How GraphQL loads references, whichever path loads them: one request shape per set
    of ids, so the DataLoaders and `schema.prepared` share cache entries.
    """
    wanted = sorted(set(ids))
    query = records.list_query(
        filter={"id": {"in": wanted}}, limit=len(wanted), filter_field="where"
    )
    return await list_body(services, principal, type_name, query, fresh=fresh)


async def record_body(
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    *,
    fresh: bool = False,
    transport: Transport = "rest",
) -> Cached:
    """One record as `{"data": ...}` bytes."""
    type_def = records.readable_type(services, principal, type_name)

    async def compute() -> bytes:
        found = await records.get_record(services, principal, type_name, record_id)
        return _ENCODER.encode({"data": found})

    if type_def.read_access_logging:
        result = await services.cache.bypass(principal, compute)
        await record_read(services, principal, type_name, record_id, transport)
        return result
    plan = _plan(services, principal, type_name)
    if fresh or plan.uses_now:
        return await services.cache.bypass(principal, compute)
    key = services.cache.record_key(
        principal, type_name, record_id, "one", depends=plan.record_depends
    )
    return await services.cache.read(principal, key, compute)


async def record_by_body(
    services: Services,
    principal: Principal,
    type_name: str,
    property_name: str,
    value: str,
    *,
    fresh: bool = False,
    transport: Transport = "rest",
) -> Cached:
    """The record whose unique `property_name` is `value`, as `{"data": ...}` bytes."""
    type_def = records.readable_type(services, principal, type_name)
    found_id = 0

    async def compute() -> bytes:
        nonlocal found_id
        found = await records.get_by(services, principal, type_name, property_name, value)
        found_id = found["id"]
        return _ENCODER.encode({"data": found})

    if type_def.read_access_logging:
        result = await services.cache.bypass(principal, compute)
        await record_read(services, principal, type_name, found_id, transport)
        return result
    plan = _plan(services, principal, type_name)
    if fresh or plan.uses_now:
        return await services.cache.bypass(principal, compute)
    shape = request_shape_hash([property_name, value])
    key = services.cache.type_key(
        principal, type_name, f"by.{property_name}", shape, depends=plan.reach
    )
    return await services.cache.read(principal, key, compute)


# --- what an entry depends on --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    reach: tuple[str, ...]
    """Types a list's filter and row scopes can look at (the type itself included)."""
    record_depends: tuple[str, ...]
    """Other types a single record's visibility depends on (its scope follows references)."""
    uses_now: bool
    """A row scope on a reachable type mentions `$now`: answers change by themselves."""


_PLANS: dict[tuple[str, frozenset[str], str], _Plan] = {}
_PLANS_LIMIT = 4096


def _plan(services: Services, principal: Principal, type_name: str) -> _Plan:
    """Per tenant, role set and type: computed once, looked up per request."""
    tenant = services.tenant
    key = (tenant.digest, principal.roles, type_name)
    if (plan := _PLANS.get(key)) is not None:
        return plan
    reach = tenant.reachable(type_name)
    trees = {name: [scope_tree(e) for e in principal.on(name).read.filters] for name in reach}
    crosses = any(len(p.parts) > 1 for tree in trees[type_name] for p in q.paths(tree))
    plan = _Plan(
        reach=reach,
        record_depends=tuple(t for t in reach if t != type_name) if crosses else (),
        uses_now=any(_mentions_now(tree) for group in trees.values() for tree in group),
    )
    if len(_PLANS) >= _PLANS_LIMIT:
        _PLANS.clear()
    _PLANS[key] = plan
    return plan


def _mentions_now(node: q.Node) -> bool:
    return any(value.kind == "now" for value in _values(node))


def _values(node: q.Node) -> Iterator[q.Value]:
    match node:
        case q.Compare(value=value):
            yield value
        case q.In(values=values):
            yield from values
        case q.IsNull():
            return
        case q.And(items=items) | q.Or(items=items):
            for item in items:
                yield from _values(item)
        case q.Not(item=item):
            yield from _values(item)


# --- the canonical request shape -------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _list_facts(query: records.ListQuery) -> tuple[str, bool]:
    """`request_shape_hash` of the list's shape, and whether its filter mentions `$now`
    (a `ListQuery` is immutable and hashable: both are worked out once per shape)."""
    mentions_now = query.filter is not None and _mentions_now(query.filter)
    return request_shape_hash(_list_shape(query)), mentions_now


def _list_shape(query: records.ListQuery) -> dict[str, Any]:
    """What a list request means, in a form that hashes the same for every spelling."""
    return {
        "filter": None if query.filter is None else _canonical(query.filter),
        "equals": sorted(set(query.equals)),
        "order": [[name, descending] for name, descending in records.canonical_order(query.order)],
        "limit": query.limit,
        "offset": query.offset,
        "after": query.after,
        "fields": None if query.fields is None else sorted(set(query.fields)),
        "hide": sorted(set(query.hide)),
        "count": query.count,
    }


def _canonical(node: q.Node) -> list[Any]:
    """A tagged, position-free form of a filter tree; AND/OR operands sorted and flattened."""
    match node:
        case q.Compare(path=path, op=op, value=value):
            return ["cmp", list(path.parts), op, _canonical_value(value)]
        case q.In(path=path, values=values):
            items = sorted({msgspec.json.encode(_canonical_value(v)) for v in values})
            return ["in", list(path.parts), [msgspec.json.decode(i) for i in items]]
        case q.IsNull(path=path, null=null):
            return ["null", list(path.parts), null]
        case q.And(items=items) | q.Or(items=items):
            tag = "and" if isinstance(node, q.And) else "or"
            operands: set[bytes] = set()
            for item in items:
                form = _canonical(item)
                for flat in form[1] if form[0] == tag else [form]:
                    operands.add(msgspec.json.encode(flat))
            return [tag, [msgspec.json.decode(o) for o in sorted(operands)]]
        case q.Not(item=item):
            return ["not", _canonical(item)]
    raise AssertionError(node)  # pragma: no cover - Node is a closed union


def _canonical_value(value: q.Value) -> list[Any]:
    raw = value.raw
    if isinstance(raw, Decimal):
        # 10, 10.0 and 1E1 are one number; normalize() drops the trailing zeros.
        return [value.kind, str(raw.normalize())]
    return [value.kind, raw]
