"""Root fields of the tenant's collections: each one a call into the resolvers REST calls.

Reads go through `resolvers.reads` (the same rendered bodies and cache entries as REST's
list, get and get-by-property; GraphQL decodes the bytes), writes through
`resolvers.collections`. A GraphQL list and the equivalent REST SEARCH build equal
`ListQuery` values, so they share one cache entry.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, cast

import msgspec
import strawberry
from strawberry.types.field import StrawberryField

from resolvers import collections as records
from resolvers import query_grammar as q
from resolvers import reads
from resolvers.errors import NotFound
from resolvers.principal import Principal
from schema import scalars
from schema.context import GraphQLContext, Record
from schema.types import (
    REQUIRED,
    Info,
    TypeClasses,
    input_json,
    list_type,
    maybe_type,
    order_names,
    pascal,
    resolver_with,
    where_json,
)

__all__ = ["READ_ROOT", "ReadRoot", "list_query", "mutation_fields", "query_fields"]

_DECODER = msgspec.json.Decoder()
_UNSET: Any = strawberry.UNSET

READ_ROOT = "jetstack.read"
"""The metadata key of a generated root read field (its value: a `ReadRoot`), by which
`schema.prepared` recognises the reads it may answer without executing them."""


class ReadRoot(NamedTuple):
    """What a generated root field reads: a list, a get by id, or a get by `property`."""

    kind: Literal["list", "one", "by"]
    type_name: str
    property: str | None = None


def _given(value: object) -> bool:
    return value is not strawberry.UNSET and value is not None


def list_query(
    *,
    where: object = _UNSET,
    filter: object = _UNSET,
    order: object = _UNSET,
    limit: object = _UNSET,
    offset: object = _UNSET,
    after: object = _UNSET,
    count: bool = False,
) -> records.ListQuery:
    """The `ListQuery` REST's SEARCH builds for the same request.

    `where` becomes the JSON form, `filter` is the text form; both given, they are ANDed.
    """
    document = where_json(where) if _given(where) else {}
    text = filter if isinstance(filter, str) and filter else None
    spelled: object = None
    field = "where"
    if document and text is not None:
        spelled = q.And((q.parse_json(document, field="where"), q.parse_text(text, field="filter")))
        field = "filter"
    elif document:
        spelled = document
    elif text is not None:
        spelled, field = text, "filter"
    return records.list_query(
        filter=spelled,
        order=order_names(order) if isinstance(order, list) and order else None,
        limit=limit if _given(limit) else None,
        offset=offset if _given(offset) else None,
        after=after if _given(after) else None,
        count=count,
        filter_field=field,
    )


def _data(body: bytes) -> Any:
    return _DECODER.decode(body)["data"]


def _written(principal: Principal, classes: TypeClasses, record: Record) -> Record:
    """A write's readback; outside the caller's read scope it is the bare id: fill in nulls."""
    if set(record) != {"id"}:
        return record
    hidden = principal.on(classes.type_def.name).hidden
    return {name: None for name in classes.fields if name not in hidden} | record


def query_fields(classes: TypeClasses) -> list[StrawberryField]:
    """`<plural>(...)`, `<single>(id)` and `<single>By<Property>(value)`."""
    type_name = classes.type_def.name
    maybe = maybe_type(classes.object)

    async def list_(info: Info, noCache: bool = False, **arguments: Any) -> dict[str, Any]:  # noqa: N803 - GraphQL names
        context: GraphQLContext = info.context
        query = list_query(**arguments)
        found = context.remember(
            await reads.list_body(
                context.services,
                context.acting(),
                type_name,
                query,
                fresh=context.fresh or noCache,
            )
        )
        page = _DECODER.decode(found.body)
        meta = page["meta"]
        return {"items": page["data"], "total": meta.get("total"), "next": meta.get("next")}

    async def one(info: Info, id: int, noCache: bool = False) -> Record | None:  # noqa: N803
        context: GraphQLContext = info.context
        try:
            found = await reads.record_body(
                context.services,
                context.acting(),
                type_name,
                id,
                fresh=context.fresh or noCache,
                transport="graphql",
            )
        except NotFound:
            return None
        return _data(context.remember(found).body)  # type: ignore[no-any-return]

    fields = [
        _root(
            classes.plural,
            list_,
            [
                ("where", maybe_type(classes.where), _UNSET),
                ("filter", str | None, _UNSET),
                ("order", maybe_type(list_type(classes.order)), _UNSET),
                ("limit", int | None, _UNSET),
                ("offset", int | None, _UNSET),
                ("after", str | None, _UNSET),
                ("count", bool, False),
                ("noCache", bool, False),
            ],
            classes.page,
            f"{type_name} records in your read scope (the REST list and SEARCH).",
            read=ReadRoot("list", type_name),
        ),
        _root(
            classes.single,
            one,
            [("id", scalars.BigInt, REQUIRED), ("noCache", bool, False)],
            maybe,
            f"One {type_name}; null if there is none you can read.",
            read=ReadRoot("one", type_name),
        ),
    ]
    unique = [p.name for p in classes.type_def.properties.values() if p.api and p.unique]
    return fields + [_by_field(classes, name) for name in unique]


def _by_field(classes: TypeClasses, property_name: str) -> StrawberryField:
    type_name = classes.type_def.name

    async def by(info: Info, value: str, noCache: bool = False) -> Record | None:  # noqa: N803
        context: GraphQLContext = info.context
        try:
            found = await reads.record_by_body(
                context.services,
                context.acting(),
                type_name,
                property_name,
                value,
                fresh=context.fresh or noCache,
                transport="graphql",
            )
        except NotFound:
            return None
        return _data(context.remember(found).body)  # type: ignore[no-any-return]

    return _root(
        f"{classes.single}By{pascal(property_name)}",
        by,
        [("value", str, REQUIRED), ("noCache", bool, False)],
        maybe_type(classes.object),
        f"The {type_name} whose {property_name} is `value`; null if none you can read.",
        read=ReadRoot("by", type_name, property_name),
    )


def mutation_fields(classes: TypeClasses) -> list[StrawberryField]:
    """`create<T>`, `update<T>`, `replace<T>`, `delete<T>`."""
    type_name = classes.type_def.name
    big = scalars.BigInt

    async def create(info: Info, data: object) -> Record:
        context: GraphQLContext = info.context
        principal = context.acting()
        record = await records.create_record(
            context.services, principal, type_name, input_json(data)
        )
        return _written(principal, classes, record)

    async def update(info: Info, id: int, data: object) -> Record:
        context: GraphQLContext = info.context
        principal = context.acting()
        record = await records.update_record(
            context.services, principal, type_name, id, input_json(data)
        )
        return _written(principal, classes, record)

    async def replace(info: Info, id: int, data: object) -> Record:
        context: GraphQLContext = info.context
        principal = context.acting()
        record = await records.update_record(
            context.services, principal, type_name, id, input_json(data), replace=True
        )
        return _written(principal, classes, record)

    async def delete(info: Info, id: int) -> bool:
        context: GraphQLContext = info.context
        await records.delete_record(context.services, context.acting(), type_name, id)
        return True

    return [
        _root(
            f"create{type_name}",
            create,
            [("data", classes.create, REQUIRED)],
            classes.object,
            f"Create a {type_name}.",
        ),
        _root(
            f"update{type_name}",
            update,
            [("id", big, REQUIRED), ("data", classes.patch, REQUIRED)],
            classes.object,
            f"Change some fields of a {type_name}.",
        ),
        _root(
            f"replace{type_name}",
            replace,
            [("id", big, REQUIRED), ("data", classes.create, REQUIRED)],
            classes.object,
            f"Replace every writable field of a {type_name}.",
        ),
        _root(
            f"delete{type_name}",
            delete,
            [("id", big, REQUIRED)],
            bool,
            f"Delete a {type_name}.",
        ),
    ]


def _root(
    name: str,
    function: Any,
    parameters: list[tuple[str, object, object]],
    returned: object,
    description: str,
    *,
    read: ReadRoot | None = None,
) -> StrawberryField:
    field = strawberry.field(
        resolver=resolver_with(function, parameters, returned, name=name),
        name=name,
        description=description,
        metadata={READ_ROOT: read} if read else None,
    )
    return cast("StrawberryField", field)  # typed as the resolver's result, for class bodies
