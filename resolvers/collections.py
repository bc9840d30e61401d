"""Collection access: list, get, get-by-property, create, update, replace, delete.

One implementation for every transport. Each call takes the acting `Principal` and
a typed request value; permissions (per-type rights, row scopes, hidden and
read-only fields) are enforced here, so REST and GraphQL cannot differ. Records
outside the caller's read scope do not exist for it (404), and writes are limited to
the update/delete scope as well.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers import blobs, values
from resolvers import query_grammar as q
from resolvers.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from resolvers.principal import Principal, Scope
from resolvers.query_compile import Compiler
from resolvers.services import Services
from resolvers.tenant import SYSTEM_FIELDS, Kind, Property, TypeDef

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "ListQuery",
    "Page",
    "canonical_order",
    "create_in",
    "create_record",
    "delete_in",
    "delete_record",
    "get_by",
    "get_in",
    "get_record",
    "list_in",
    "list_query",
    "list_records",
    "readable_type",
    "readback",
    "readback_in",
    "update_in",
    "update_record",
]

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000
_MAX_ORDER = 8
_MAX_EQUALS = 20
_UNORDERABLE = frozenset({Kind.FILE, Kind.TEXT})
_UTC = ZoneInfo("UTC")
_MAX_ID = 2**63 - 1

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ListQuery:
    """The shape of a list request, whatever spelled it (query string, SEARCH body, GraphQL)."""

    filter: q.Node | None = None
    order: tuple[tuple[str, bool], ...] = ()
    """(field, descending) pairs; `id` is always the last tie-break."""
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    after: str | None = None
    fields: tuple[str, ...] | None = None
    hide: tuple[str, ...] = ()
    count: bool = False
    equals: tuple[tuple[str, str], ...] = ()
    """Plain `prop=value` parameters: equality with a value written as URL text."""
    filter_field: str = "_filter"
    """How the request names its filter (`_filter`, `filter`, `where`), for error messages."""


@dataclass(frozen=True, slots=True)
class Page:
    data: list[Record]
    limit: int
    offset: int
    total: int | None = None
    next: str | None = None


# --- request values ---------------------------------------------------------------


def list_query(
    *,
    filter: object = None,
    order: object = None,
    limit: object = None,
    offset: object = None,
    after: object = None,
    fields: object = None,
    hide: object = None,
    count: object = None,
    equals: Sequence[tuple[str, str]] = (),
    filter_field: str = "_filter",
) -> ListQuery:
    """Validate the control values of a list request into a `ListQuery`.

    Names are checked against the type later, with the principal at hand; here only
    shapes and bounds. `filter` is the text form, the JSON form's decoded value, or an
    already parsed tree. `equals` are plain `prop=value` pairs, ANDed into the filter.
    """
    errors: list[FieldError] = []
    tree = None
    if isinstance(filter, str) and filter:
        tree = _parse_text(filter, filter_field)
    elif isinstance(filter, q.Node):
        tree = filter  # already parsed (GraphQL ANDs its `where` and `filter` spellings)
    elif filter is not None and filter != "":
        tree = q.parse_filter(filter, field=filter_field)
    if len(equals) > _MAX_EQUALS:
        errors.append(FieldError("query", f"at most {_MAX_EQUALS} equality parameters"))
    limit_value = _bounded_int(limit, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, errors)
    offset_value = _bounded_int(offset, "offset", 0, 0, MAX_OFFSET, errors)
    order_names = _names(order, "order", errors)
    if len(order_names) > _MAX_ORDER:
        errors.append(FieldError("order", f"at most {_MAX_ORDER} fields"))
    if after is not None and (not isinstance(after, str) or len(after) > 4096):
        errors.append(FieldError("after", "an opaque cursor from a previous page's `next`"))
    if after is not None and offset_value:
        errors.append(FieldError("offset", "use either offset or after, not both"))
    count_value = _flag(count, "count", errors)
    shown = tuple(_names(fields, "fields", errors)) if fields not in (None, "") else None
    hidden = tuple(_names(hide, "hide", errors))
    if errors:
        raise Invalid("the request is not valid", errors)
    return ListQuery(
        filter=tree,
        order=tuple((n.removeprefix("-"), n.startswith("-")) for n in order_names),
        limit=limit_value,
        offset=offset_value,
        after=after if isinstance(after, str) else None,
        fields=shown,
        hide=hidden,
        count=count_value,
        equals=tuple((name, str(value)) for name, value in equals),
        filter_field=filter_field,
    )


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str, field: str) -> q.Node:
    """Text filters parsed once per process: trees are immutable, clients repeat queries."""
    return q.parse_text(text, field=field)


def _bounded_int(  # noqa: PLR0917 - a private parser of one bounded value
    value: object, name: str, default: int, low: int, high: int, errors: list[FieldError]
) -> int:
    if value is None or value == "":
        return default
    try:
        number = (
            int(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        )
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        errors.append(FieldError(name, f"a whole number from {low} to {high}"))
        return default
    return number


def _names(value: object, name: str, errors: list[FieldError]) -> list[str]:
    if value is None or value == "":
        return []
    items = value.split(",") if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not all(isinstance(i, str) for i in items)
        or len(items) > 200
    ):
        errors.append(FieldError(name, "a comma-separated string or a list of field names"))
        return []
    return [i.strip() for i in items if i.strip()]


def _flag(value: object, name: str, errors: list[FieldError]) -> bool:
    if value in (None, "", False, 0, "0", "false"):
        return False
    if value in (True, 1, "1", "true"):
        return True
    errors.append(FieldError(name, "1 or 0"))
    return False


# --- reading ----------------------------------------------------------------------


def readable_type(services: Services, principal: Principal, name: str) -> TypeDef:
    """The API type `name` if the caller may read some of it: 404 unknown, 403 none."""
    return _type(services, principal, name)


def _type(services: Services, principal: Principal, name: str, right: str = "read") -> TypeDef:
    type_def = services.tenant.types.get(name)
    if type_def is None or not type_def.api:
        raise NotFound(f"no collection named {name!r}")
    scope: Scope = getattr(principal.on(name), right)
    if scope.none:
        raise Forbidden(f"you may not {right} {name} records")
    return type_def


def _visible(principal: Principal, type_def: TypeDef) -> list[Property]:
    """The fields the caller may see, system fields first."""
    hidden = principal.on(type_def.name).hidden
    found = [values.field(type_def, f) for f in SYSTEM_FIELDS]
    found += [p for p in type_def.properties.values() if p.api]
    return [p for p in found if p is not None and p.name not in hidden]


def _shown(
    visible: list[Property], fields: tuple[str, ...] | None, hide: tuple[str, ...]
) -> list[Property]:
    names = {p.name for p in visible}
    errors = [
        FieldError(key, f"unknown field {n!r}")
        for key, group in (("fields", fields or ()), ("hide", hide))
        for n in group
        if n not in names
    ]
    if errors:
        raise Invalid("unknown fields", errors)
    chosen = [p for p in visible if fields is None or p.name in fields or p.name == "id"]
    return [p for p in chosen if p.name not in hide or p.name == "id"]


async def list_records(
    services: Services, principal: Principal, type_name: str, query: ListQuery
) -> Page:
    async with services.engine.connect() as conn:
        return await list_in(conn, services, principal, type_name, query)


async def list_in(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_name: str,
    query: ListQuery,
) -> Page:
    """`list_records` on `conn`: inside a caller's transaction, it sees its writes."""
    type_def = _type(services, principal, type_name)
    plan = _list_plan(services, principal, type_def, query)
    rows = (await conn.execute(plan.page)).mappings().all()
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    shown, order = plan.shown, plan.order
    children = await _children(conn, services, type_def, shown, [r["id"] for r in rows])
    total = None if plan.total is None else await conn.scalar(plan.total)
    render = _renderer(services, principal, shown)
    data = [render(row, children) for row in rows]
    cursor = _encode_cursor(order, rows[-1]) if more and rows else None
    return Page(data=data, limit=query.limit, offset=query.offset, total=total, next=cursor)


class _ListPlan(NamedTuple):
    shown: list[Property]
    order: list[tuple[str, bool]]
    page: Select[Any]
    total: Select[Any] | None


def _list_plan(
    services: Services, principal: Principal, type_def: TypeDef, query: ListQuery
) -> _ListPlan:
    """The statements of a list, compiled once per principal and request shape.

    The principal's fingerprint covers everything compiling reads of it (user, roles,
    zone); a plan that read `$now` holds for this instant only and is not kept.
    """
    key = ("list", type_def.name, principal.fingerprint, query)
    found: _ListPlan | None = services.statements.get(key)
    if found is not None:
        return found
    table = services.schema.records[type_def.name]
    compiler = Compiler(
        services.tenant,
        services.schema,
        principal,
        services.clock(),
        field_name=query.filter_field,
    )
    visible = _visible(principal, type_def)
    shown = _shown(visible, query.fields, query.hide)
    where = compiler.read_scope(type_def)
    if query.filter is not None:
        where = and_(where, compiler.filter(type_def, query.filter))
    for name, text in query.equals:
        where = and_(where, compiler.equals(type_def, name, text))
    order = _order(type_def, visible, query.order)
    page_query = select(*(table.c[p.name] for p in shown if not p.multiple)).where(where)
    if query.after is not None:
        last = _decode_cursor(query.after, order, {p.name: p for p in visible})
        page_query = page_query.where(_after(table, order, last))
    page_query = page_query.order_by(*_order_by(table, order)).limit(query.limit + 1)
    page_query = page_query.offset(query.offset)
    needs = {name for name, _ in order} - {p.name for p in shown}
    if needs:
        page_query = page_query.add_columns(*(table.c[n] for n in needs))
    count = select(func.count()).select_from(table).where(where) if query.count else None
    plan = _ListPlan(shown, order, page_query, count)
    return plan if compiler.used_now else services.statements.put(key, plan)


async def get_record(
    services: Services, principal: Principal, type_name: str, record_id: int
) -> Record:
    type_def = _type(services, principal, type_name)
    _check_id(type_name, record_id)
    async with services.engine.connect() as conn:
        return await _one(conn, services, principal, type_def, "id", record_id, f"id {record_id}")


async def get_in(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    *,
    lock: bool = False,
) -> Record:
    """`get_record` on `conn`; with `lock`, the row stays locked until the transaction
    ends (`FOR UPDATE` on PostgreSQL; SQLite's write transactions already exclude others)."""
    type_def = _type(services, principal, type_name)
    _check_id(type_name, record_id)
    return await _one(
        conn, services, principal, type_def, "id", record_id, f"id {record_id}", lock=lock
    )


async def get_by(
    services: Services, principal: Principal, type_name: str, property_name: str, raw: str
) -> Record:
    """Get the record whose unique property (an alternative key) has the value `raw`."""
    type_def = _type(services, principal, type_name)
    prop = type_def.properties.get(property_name)
    hidden = principal.on(type_name).hidden
    if prop is None or not prop.api or prop.name in hidden:
        raise Invalid(
            "unknown property", [FieldError("property", f"{type_name} has no {property_name!r}")]
        )
    if not prop.unique:
        raise Invalid("not a key", [FieldError("property", f"{property_name} is not unique")])
    try:
        key = values.coerce_text(prop, raw, principal.zone)
    except ValueError as exc:
        raise Invalid("invalid value", [FieldError(property_name, str(exc))]) from exc
    async with services.engine.connect() as conn:
        return await _one(
            conn,
            services,
            principal,
            type_def,
            prop.name,
            key,
            f"{property_name} {raw!r}",
        )


def _check_id(type_name: str, record_id: int) -> None:
    """An id no row can have (a driver would overflow on it) names no record."""
    if not 1 <= record_id <= _MAX_ID:
        raise NotFound(f"no {type_name} with id {record_id}")


async def _one(  # noqa: PLR0917 - a private reader, called in three places
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_def: TypeDef,
    column: str,
    value: object,
    what: str,
    *,
    lock: bool = False,
) -> Record:
    """The record whose `column` is `value`, through the caller's read scope."""
    shown, query = _one_plan(services, principal, type_def, column, lock=lock)
    row = (await conn.execute(query, {"key": value})).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no {type_def.name} with {what}")
    children = await _children(conn, services, type_def, shown, [row["id"]])
    return _renderer(services, principal, shown)(row, children)


def _one_plan(
    services: Services, principal: Principal, type_def: TypeDef, column: str, *, lock: bool
) -> tuple[list[Property], Select[Any]]:
    """The statement of a get by `column` (its value bound as `key`), compiled once per
    principal (see `_list_plan`); `lock` adds `FOR UPDATE` on PostgreSQL."""
    lock = lock and services.engine.dialect.name == "postgresql"
    key = ("one", type_def.name, principal.fingerprint, column, lock)
    found: tuple[list[Property], Select[Any]] | None = services.statements.get(key)
    if found is not None:
        return found
    table = services.schema.records[type_def.name]
    compiler = Compiler(services.tenant, services.schema, principal, services.clock())
    shown = _visible(principal, type_def)
    query = select(*(table.c[p.name] for p in shown if not p.multiple)).where(
        table.c[column] == bindparam("key"), compiler.read_scope(type_def)
    )
    if lock:
        query = query.with_for_update(of=table)
    plan = (shown, query)
    return plan if compiler.used_now else services.statements.put(key, plan)


async def _children(
    conn: AsyncConnection,
    services: Services,
    type_def: TypeDef,
    shown: list[Property],
    ids: list[int],
) -> dict[str, dict[int, list[Any]]]:
    """Values of the shown multi-valued properties for these records: one query each."""
    found: dict[str, dict[int, list[Any]]] = {}
    for prop in shown:
        if not prop.multiple:
            continue
        child = services.schema.children[type_def.name, prop.name]
        per_record: dict[int, list[Any]] = {i: [] for i in ids}
        if ids:
            rows = await conn.execute(
                select(child.c.record_id, child.c.value)
                .where(child.c.record_id.in_(ids))
                .order_by(child.c.record_id, child.c.position)
            )
            for record_id, value in rows:
                per_record[record_id].append(value)
        found[prop.name] = per_record
    return found


def _renderer(
    services: Services, principal: Principal, shown: list[Property]
) -> Callable[[RowMapping | Mapping[str, Any], dict[str, dict[int, list[Any]]]], Record]:
    """Rows (and their children) → records as `principal` sees them; each property's
    rendering is looked up once per request, not once per row."""
    shape = services.tenant.multiple_value_shape
    zone = principal.zone
    single = [(p.name, values.renderer(p, zone)) for p in shown if not p.multiple]
    multiple = [p for p in shown if p.multiple]
    order = [p.name for p in shown]

    def render(
        row: RowMapping | Mapping[str, Any], children: dict[str, dict[int, list[Any]]]
    ) -> Record:
        record: Record = {}
        for name, one in single:
            value = row[name]
            record[name] = None if value is None else one(value)
        for prop in multiple:
            raw = children[prop.name][row["id"]]
            record[prop.name] = values.render(prop, raw, zone, shape=shape)
        return record if not multiple else {name: record[name] for name in order}

    return render


# --- ordering and cursors ---------------------------------------------------------


def _order(
    type_def: TypeDef, visible: list[Property], order: tuple[tuple[str, bool], ...]
) -> list[tuple[str, bool]]:
    allowed = {p.name: p for p in visible}
    errors = []
    for name, _ in order:
        prop = allowed.get(name)
        if prop is None:
            errors.append(FieldError("order", f"{type_def.name} has no field {name!r}"))
        elif prop.multiple or prop.kind in _UNORDERABLE:
            errors.append(FieldError("order", f"{name!r} cannot be ordered by"))
    if errors:
        raise Invalid("the order is not valid", errors)
    return list(canonical_order(order))


def canonical_order(order: tuple[tuple[str, bool], ...]) -> tuple[tuple[str, bool], ...]:
    """The order a list really uses: `id` ends it, as the last tie-break when not named.

    `id` is unique, so nothing after it matters.
    """
    names = [n for n, _ in order]
    end = names.index("id") if "id" in names else len(order)
    tie = order[end][1] if end < len(order) else False
    return (*order[:end], ("id", tie))


def _order_by(table: Table, order: list[tuple[str, bool]]) -> list[Any]:
    # NULLs last in both directions, on both backends, so cursors compare the same way.
    return [(table.c[n].desc() if d else table.c[n].asc()).nulls_last() for n, d in order]


def _after(table: Table, order: list[tuple[str, bool]], last: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after `last` in `order` (NULLs last): the keyset condition."""
    alternatives = []
    equal_so_far: list[ColumnElement[bool]] = []
    for (name, descending), value in zip(order, last, strict=True):
        column = table.c[name]
        same: ColumnElement[bool]
        if value is None:
            beyond: ColumnElement[bool] | None = None
            same = column.is_(None)
        else:
            # A bound literal: SQLAlchemy refuses `<`/`>` against a bare True/False.
            bound = literal(value, column.type)
            beyond = or_(column < bound if descending else column > bound, column.is_(None))
            same = column == bound
        if beyond is not None:
            alternatives.append(and_(*equal_so_far, beyond) if equal_so_far else beyond)
        equal_so_far.append(same)
    return or_(*alternatives) if alternatives else false()


class _Cursor(msgspec.Struct, array_like=True):
    order: str
    last: list[Any]


def _order_key(order: list[tuple[str, bool]]) -> str:
    spec = ",".join(("-" if d else "") + n for n, d in order)
    return hashlib.sha256(spec.encode()).hexdigest()[:12]


def _encode_cursor(order: list[tuple[str, bool]], row: RowMapping) -> str:
    last = [_cursor_value(row[name]) for name, _ in order]
    raw = msgspec.json.encode(_Cursor(order=_order_key(order), last=last))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_value(value: Any) -> Any:
    """JSON-safe: msgspec writes dates and datetimes as ISO text, decimals as text."""
    return str(value) if isinstance(value, Decimal) else value


def _cursor_load(prop: Property, value: Any) -> Any:
    """The stored type of one cursor value, or ValueError when it cannot be one.

    A cursor comes back from the client: every value is checked like input (kind, range,
    precision), never trusted, so a forged one is a 422 and never reaches the driver.
    """
    if value is None:
        return None
    if prop.kind in values.TEXT_KINDS:
        if isinstance(value, str):
            return value  # as stored, even if it predates a stricter tenant file
        raise ValueError(value)
    return values.coerce(prop, value, _UTC)


def _decode_cursor(
    token: str, order: list[tuple[str, bool]], props: Mapping[str, Property]
) -> list[Any]:
    bad = Invalid(
        "the cursor is not valid", [FieldError("after", "use the `next` of the same query")]
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = msgspec.json.decode(raw, type=_Cursor)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise bad from None
    if cursor.order != _order_key(order) or len(cursor.last) != len(order):
        raise bad
    try:
        return [
            _cursor_load(props[name], value)
            for (name, _), value in zip(order, cursor.last, strict=True)
        ]
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        raise bad from None


# --- writing ----------------------------------------------------------------------
#
# Each write is implemented once (`_create`, `_update`, `_delete`), on a transaction of
# its own (the `*_record` functions) or on a caller's connection (the `*_in` functions,
# for several writes in one transaction: the commands of `resolvers.commands`). Either
# way the write is checked (type, right, id, body) before the response cache is bumped,
# and the cache is bumped before the write happens: a read racing the transaction cannot
# store what it saw as current. The bump after the commit is the caller's: here for the
# `*_record` functions, at the end of the transaction for the `*_in` ones.
#
# On a caller's connection a write runs in a savepoint: one that fails (a unique value
# taken, a record created outside the create scope) leaves nothing behind, even if the
# caller goes on, and the connection can still be queried (on PostgreSQL a failed
# statement aborts the transaction up to the last savepoint).


async def create_record(
    services: Services, principal: Principal, type_name: str, data: Mapping[str, Any]
) -> Record:
    record_id = await _create(services, principal, type_name, data)
    await services.cache.written(type_name, record_id)
    return await readback(services, principal, type_name, record_id)


async def update_record(
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    data: Mapping[str, Any],
    *,
    replace: bool = False,
) -> Record:
    """PATCH (only the fields sent) or, with `replace`, PUT (every writable field)."""
    await _update(services, principal, type_name, record_id, data, replace=replace)
    await services.cache.written(type_name, record_id)
    return await readback(services, principal, type_name, record_id)


async def delete_record(
    services: Services, principal: Principal, type_name: str, record_id: int
) -> None:
    held = await _delete(services, principal, type_name, record_id)
    referrers = services.tenant.referrers(type_name)
    await services.cache.written(type_name, record_id, affected=referrers)
    await blobs.release(services, held)  # deleted unless another record holds them too


async def create_in(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_name: str,
    data: Mapping[str, Any],
) -> int:
    """`create_record` on `conn`, inside the caller's transaction; the new record's id."""
    return await _create(services, principal, type_name, data, conn)


async def update_in(  # noqa: PLR0917 - `update_record`'s arguments and the connection
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    data: Mapping[str, Any],
    *,
    replace: bool = False,
) -> None:
    """`update_record` on `conn`, inside the caller's transaction."""
    await _update(services, principal, type_name, record_id, data, conn, replace=replace)


async def delete_in(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
) -> list[str]:
    """`delete_record` on `conn`, inside the caller's transaction; the digests of the
    files the record held, for `blobs.release` once that transaction has committed."""
    return await _delete(services, principal, type_name, record_id, conn)


async def readback_in(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
) -> Record:
    """A record just written on `conn`, as the caller may see it (only its id if it may
    not read it)."""
    try:
        return await get_in(conn, services, principal, type_name, record_id)
    except (NotFound, Forbidden):
        return {"id": record_id}


async def readback(
    services: Services, principal: Principal, type_name: str, record_id: int
) -> Record:
    """`readback_in` once the write has committed (on a connection of its own)."""
    async with services.engine.connect() as conn:
        return await readback_in(conn, services, principal, type_name, record_id)


@asynccontextmanager
async def _writing(
    services: Services, conn: AsyncConnection | None
) -> AsyncIterator[AsyncConnection]:
    """A transaction of its own, or a savepoint on the caller's `conn`."""
    if conn is None:
        async with services.writer.begin() as own:
            yield own
    else:
        async with conn.begin_nested():
            yield conn


async def _create(
    services: Services,
    principal: Principal,
    type_name: str,
    data: Mapping[str, Any],
    conn: AsyncConnection | None = None,
) -> int:
    type_def = _type(services, principal, type_name, "create")
    fields = _writable(principal, type_def, data, complete=True)
    await services.cache.written(type_name, None)
    try:
        async with _writing(services, conn) as on:
            return await _insert_row(on, services, principal, type_def, fields)
    except IntegrityError as exc:
        # Rolled back: `conn`'s savepoint only, or the whole transaction of its own.
        raise await _conflict(services, type_def, fields, exc, conn) from exc


async def _update(  # noqa: PLR0917 - `update_in`'s arguments
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    data: Mapping[str, Any],
    conn: AsyncConnection | None = None,
    *,
    replace: bool,
) -> None:
    type_def = _type(services, principal, type_name, "update")
    _check_id(type_name, record_id)
    fields = _writable(principal, type_def, data, complete=replace)
    await services.cache.written(type_name, record_id)
    try:
        async with _writing(services, conn) as on:
            await _update_row(on, services, principal, type_def, record_id, fields)
    except IntegrityError as exc:
        raise await _conflict(services, type_def, fields, exc, conn) from exc


async def _delete(
    services: Services,
    principal: Principal,
    type_name: str,
    record_id: int,
    conn: AsyncConnection | None = None,
) -> list[str]:
    """Delete a record; the digests of the files it held (release them after the commit)."""
    type_def = _type(services, principal, type_name, "delete")
    _check_id(type_name, record_id)
    # Deleting nulls (or drops, in link tables) the references other records hold to it.
    referrers = services.tenant.referrers(type_name)
    await services.cache.written(type_name, record_id, affected=referrers)
    try:
        async with _writing(services, conn) as on:
            held = await blobs.held(on, services, type_def, record_id)
            await _delete_row(on, services, principal, type_def, record_id)
    except IntegrityError as exc:
        raise _still_referenced(type_name) from exc
    return held


async def _insert_row(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_def: TypeDef,
    fields: dict[str, Any],
) -> int:
    now = services.clock()
    table = services.schema.records[type_def.name]
    compiler = Compiler(services.tenant, services.schema, principal, now)
    single = {k: v for k, v in fields.items() if not type_def.properties[k].multiple}
    await _check_references(conn, services, compiler, type_def, fields)
    record_id = await conn.scalar(
        insert(table)
        .values(
            **single,
            created_on=now,
            updated_on=now,
            created_by=principal.user_id,
            updated_by=principal.user_id,
        )
        .returning(table.c.id)
    )
    record_id = int(record_id or 0)
    await _write_children(conn, services, type_def, record_id, fields)
    create = principal.on(type_def.name).create
    if not create.all and not await _matches(
        conn, table, record_id, compiler.scope(type_def, create)
    ):
        raise Forbidden(f"you may not create this {type_def.name}: it is outside your scope")
    return record_id


async def _update_row(  # noqa: PLR0917 - a private step of `_update`
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_def: TypeDef,
    record_id: int,
    fields: dict[str, Any],
) -> None:
    now = services.clock()
    table = services.schema.records[type_def.name]
    compiler = Compiler(services.tenant, services.schema, principal, now)
    single = {k: v for k, v in fields.items() if not type_def.properties[k].multiple}
    await _writable_row(conn, services, compiler, type_def, record_id, right="update")
    await _check_references(conn, services, compiler, type_def, fields)
    await conn.execute(
        update(table)
        .where(table.c.id == record_id)
        .values(**single, updated_on=now, updated_by=principal.user_id)
    )
    await _write_children(conn, services, type_def, record_id, fields, replace=True)


async def _delete_row(
    conn: AsyncConnection,
    services: Services,
    principal: Principal,
    type_def: TypeDef,
    record_id: int,
) -> None:
    table = services.schema.records[type_def.name]
    compiler = Compiler(services.tenant, services.schema, principal, services.clock())
    await _writable_row(conn, services, compiler, type_def, record_id, right="delete")
    await conn.execute(delete(table).where(table.c.id == record_id))


def _still_referenced(type_name: str) -> Conflict:
    return Conflict(f"this {type_name} is still referenced by other records")


def _writable(
    principal: Principal, type_def: TypeDef, data: Mapping[str, Any], *, complete: bool
) -> dict[str, Any]:
    """Coerce a write body; unknown, hidden, read-only and system fields are refused."""
    rights = principal.on(type_def.name)
    errors: list[FieldError] = []
    fields: dict[str, Any] = {}
    for name, value in data.items():
        prop = type_def.properties.get(name)
        if name in SYSTEM_FIELDS:
            errors.append(FieldError(name, "is set by the server"))
        elif prop is None or not prop.api or name in rights.hidden:
            errors.append(FieldError(name, "unknown field"))
        elif name in rights.readonly:
            errors.append(FieldError(name, "is read-only for you"))
        elif prop.kind is Kind.FILE:
            errors.append(FieldError(name, f"files are uploaded to /files/{name}"))
        else:
            try:
                fields[name] = values.coerce(prop, value, principal.zone)
            except ValueError as exc:
                errors.append(FieldError(name, str(exc)))
    for prop in type_def.properties.values():
        # A replace clears what the caller may write; what it cannot see or change stays.
        kept = rights.readonly | rights.hidden
        settable = prop.api and prop.kind is not Kind.FILE and prop.name not in kept
        if complete and settable and prop.name not in data:
            fields[prop.name] = [] if prop.multiple else None
        missing = fields.get(prop.name, ...) in (None, [], "")
        if prop.required and missing and (complete or prop.name in data):
            errors.append(FieldError(prop.name, "is required"))
    if errors:
        raise Invalid(f"the {type_def.name} is not valid", errors)
    return fields


async def _writable_row(
    conn: AsyncConnection,
    services: Services,
    compiler: Compiler,
    type_def: TypeDef,
    record_id: int,
    *,
    right: str,
) -> None:
    """404 unless the caller can read the record; 403 unless `right` covers it too."""
    table = services.schema.records[type_def.name]
    query = select(table.c.id).where(table.c.id == record_id, compiler.read_scope(type_def))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    if await conn.scalar(query) is None:
        raise NotFound(f"no {type_def.name} with id {record_id}")
    scope: Scope = getattr(compiler.principal.on(type_def.name), right)
    if not scope.all and not await _matches(
        conn, table, record_id, compiler.scope(type_def, scope)
    ):
        raise Forbidden(f"you may not {right} this {type_def.name}")


async def _matches(
    conn: AsyncConnection, table: Table, record_id: int, condition: ColumnElement[bool]
) -> bool:
    return (
        await conn.scalar(select(table.c.id).where(table.c.id == record_id, condition)) is not None
    )


async def _check_references(
    conn: AsyncConnection,
    services: Services,
    compiler: Compiler,
    type_def: TypeDef,
    fields: Mapping[str, Any],
) -> None:
    """Every referenced id must name a record the caller can read."""
    errors = []
    for name, value in fields.items():
        prop = type_def.properties[name]
        if prop.kind is not Kind.REFERENCE or value in (None, []):
            continue
        wanted = set(value) if prop.multiple else {value}
        target = services.tenant.types[str(prop.to)]
        target_table = services.schema.records[target.name]
        found = set(
            await conn.scalars(
                select(target_table.c.id).where(
                    target_table.c.id.in_(wanted), compiler.read_scope(target)
                )
            )
        )
        if missing := sorted(wanted - found):
            ids = ", ".join(map(str, missing))
            errors.append(FieldError(name, f"no readable {target.name} with id {ids}"))
    if errors:
        raise Invalid(f"the {type_def.name} is not valid", errors)


async def _write_children(
    conn: AsyncConnection,
    services: Services,
    type_def: TypeDef,
    record_id: int,
    fields: Mapping[str, Any],
    *,
    replace: bool = False,
) -> None:
    for name, items in fields.items():
        if not type_def.properties[name].multiple:
            continue
        child = services.schema.children[type_def.name, name]
        if replace:
            await conn.execute(delete(child).where(child.c.record_id == record_id))
        if items:
            await conn.execute(
                insert(child),
                [{"record_id": record_id, "position": i, "value": v} for i, v in enumerate(items)],
            )


async def _conflict(
    services: Services,
    type_def: TypeDef,
    fields: Mapping[str, Any],
    exc: IntegrityError,
    conn: AsyncConnection | None = None,
) -> Conflict:
    """Name the unique property a failed write collided on (looked up on `conn`, whose
    transaction may hold the other record, else on a connection of its own)."""
    if conn is None:
        async with services.engine.connect() as own:
            return await _conflict(services, type_def, fields, exc, own)
    table = services.schema.records[type_def.name]
    for name, value in fields.items():
        prop = type_def.properties[name]
        if prop.unique and value is not None:
            taken = await conn.scalar(select(table.c.id).where(table.c[name] == value))
            if taken is not None:
                return Conflict(f"another {type_def.name} already has this {name}", field=name)
    return Conflict(f"the {type_def.name} conflicts with existing data: {type(exc.orig).__name__}")
