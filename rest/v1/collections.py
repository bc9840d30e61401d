"""`/api/v1/collections/{T}`: one router per tenant type, so OpenAPI shows real properties.

Each handler only translates HTTP into a `resolvers.collections` call: the control
parameters (`_filter`, `_order`, ...) and the SEARCH body both become a `ListQuery`.
The models built here exist for validation of shapes and for the documentation; the
rules (kinds, permissions, time) live in `resolvers`.
"""

# No `from __future__ import annotations` here: the handlers' annotations must be real
# objects, since `_annotate` rewrites them for Litestar at runtime.
import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter

from resolvers import collections as records
from resolvers.principal import Principal
from resolvers.services import Services
from resolvers.tenant import Kind, Property, Tenant, TypeDef

__all__ = ["collection_routers"]

_CONTROL = frozenset(
    {"_filter", "_order", "_limit", "_offset", "_after", "_fields", "_hide", "_count", "_noCache"}
)
_Names = str | list[str]


class FileInfo(msgspec.Struct):
    name: str
    size: int
    content_type: str
    sha256: str
    url: str


class Meta(msgspec.Struct, omit_defaults=True):
    limit: int
    offset: int
    total: int | None = None
    next: str | None = None
    """Pass as `_after` for the next page; absent on the last page."""


class SearchBody(msgspec.Struct, forbid_unknown_fields=True):
    """The list parameters for queries too long for a URL (SEARCH, or POST .../search)."""

    filter: str | dict[str, Any] | None = None
    """The text form of the query grammar, or its JSON form."""
    order: _Names | None = None
    limit: int | None = None
    offset: int | None = None
    after: str | None = None
    fields: _Names | None = None
    hide: _Names | None = None
    count: bool | None = None


def _output_type(prop: Property, shape: str) -> Any:
    single: Any
    match prop.kind:
        case Kind.INTEGER | Kind.REFERENCE:
            single = int
        case Kind.BOOLEAN:
            single = bool
        case Kind.DATETIME:
            single = dt.datetime
        case Kind.DATE:
            single = dt.date
        case Kind.ENUM:
            single = Literal[tuple(prop.values)]
        case Kind.FILE:
            single = FileInfo
        case Kind.DECIMAL:
            single = Annotated[str, msgspec.Meta(pattern=r"^-?[0-9]+(\.[0-9]+)?$")]
        case Kind.MONTH:
            single = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}$")]
        case _:
            single = str
    if not prop.multiple:
        return single | None
    return list[single] | single | None if shape == "compact" else list[single]


def _input_type(prop: Property) -> Any:
    single: Any
    match prop.kind:
        case Kind.INTEGER | Kind.REFERENCE:
            single = int
        case Kind.BOOLEAN:
            single = bool
        case Kind.DECIMAL:
            single = str | int | float
        case Kind.ENUM:
            single = Literal[tuple(prop.values)]
        case _:
            single = str
    return list[single] | None if prop.multiple else single | None


def _models(tenant: Tenant, type_def: TypeDef) -> tuple[type, type, type, type]:
    """(record, list page, create body, patch body) models of one type."""
    props = [p for p in type_def.properties.values() if p.api]
    system: list[tuple[str, Any, Any]] = [
        ("id", int, msgspec.UNSET),
        ("created_on", dt.datetime | msgspec.UnsetType, msgspec.UNSET),
        ("updated_on", dt.datetime | msgspec.UnsetType, msgspec.UNSET),
        ("created_by", int | None | msgspec.UnsetType, msgspec.UNSET),
        ("updated_by", int | None | msgspec.UnsetType, msgspec.UNSET),
    ]
    shape = tenant.multiple_value_shape
    record = msgspec.defstruct(
        type_def.name,
        [
            *system,
            *((p.name, _output_type(p, shape) | msgspec.UnsetType, msgspec.UNSET) for p in props),
        ],
    )
    page = msgspec.defstruct(f"{type_def.name}Page", [("data", list[record]), ("meta", Meta)])  # type: ignore[valid-type]
    writable = [p for p in props if p.kind is not Kind.FILE]
    create = msgspec.defstruct(
        f"{type_def.name}Create",
        [
            (p.name, _input_type(p))
            if p.required
            else (p.name, _input_type(p) | msgspec.UnsetType, msgspec.UNSET)
            for p in sorted(writable, key=lambda p: not p.required)
        ],
        forbid_unknown_fields=True,
    )
    patch_body = msgspec.defstruct(
        f"{type_def.name}Patch",
        [(p.name, _input_type(p) | msgspec.UnsetType, msgspec.UNSET) for p in writable],
        forbid_unknown_fields=True,
    )
    return record, page, create, patch_body


def _body(data: msgspec.Struct) -> dict[str, Any]:
    return {
        name: value
        for name in data.__struct_fields__
        if (value := getattr(data, name)) is not msgspec.UNSET
    }


def _equalities(request: Request[Any, Any, Any]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.items() if k not in _CONTROL]


def _page(page: records.Page) -> dict[str, Any]:
    meta: dict[str, Any] = {"limit": page.limit, "offset": page.offset}
    if page.total is not None:
        meta["total"] = page.total
    if page.next is not None:
        meta["next"] = page.next
    return {"data": page.data, "meta": meta}


def collection_routers(tenant: Tenant) -> list[Router]:
    return [_router(tenant, t) for t in tenant.types.values() if t.api]


def _router(tenant: Tenant, type_def: TypeDef) -> Router:
    name = type_def.name
    record, page_model, create_model, patch_model = _models(tenant, type_def)
    unique = [p.name for p in type_def.properties.values() if p.unique and p.api]

    async def list_(
        *,
        request: Request[Any, Any, Any],
        services: Services,
        principal: Principal,
        filter_: str | None = None,
        order: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        after: str | None = None,
        fields: str | None = None,
        hide: str | None = None,
        count: int | None = None,
        no_cache: int | None = None,
    ) -> dict[str, Any]:
        del no_cache  # every read is fresh until the response cache arrives
        query = records.list_query(
            filter=filter_,
            order=order,
            limit=limit,
            offset=offset,
            after=after,
            fields=fields,
            hide=hide,
            count=count,
            equals=_equalities(request),
        )
        return _page(await records.list_records(services, principal, name, query))

    async def search(
        data: SearchBody, services: Services, principal: Principal
    ) -> Response[dict[str, Any]]:
        query = records.list_query(
            filter=data.filter,
            order=data.order,
            limit=data.limit,
            offset=data.offset,
            after=data.after,
            fields=data.fields,
            hide=data.hide,
            count=data.count,
            filter_field="filter",
        )
        page = await records.list_records(services, principal, name, query)
        return Response(_page(page), status_code=200)

    async def get_one(record_id: int, services: Services, principal: Principal) -> dict[str, Any]:
        return {"data": await records.get_record(services, principal, name, record_id)}

    async def get_by(
        property_name: str, value: str, services: Services, principal: Principal
    ) -> dict[str, Any]:
        found = await records.get_by(services, principal, name, property_name, value)
        return {"data": found}

    async def create(data: Any, services: Services, principal: Principal) -> dict[str, Any]:
        return {"data": await records.create_record(services, principal, name, _body(data))}

    async def patch_one(
        record_id: int, data: Any, services: Services, principal: Principal
    ) -> dict[str, Any]:
        changed = await records.update_record(services, principal, name, record_id, _body(data))
        return {"data": changed}

    async def replace_one(
        record_id: int, data: Any, services: Services, principal: Principal
    ) -> dict[str, Any]:
        body = _body(data)
        changed = await records.update_record(
            services, principal, name, record_id, body, replace=True
        )
        return {"data": changed}

    async def delete_one(record_id: int, services: Services, principal: Principal) -> None:
        await records.delete_record(services, principal, name, record_id)

    _annotate(list_, page_model, name)
    _annotate(search, page_model, name)
    _annotate(get_one, record, name, item=True)
    _annotate(get_by, record, name, item=True)
    _annotate(create, record, name, item=True, body=create_model)
    _annotate(patch_one, record, name, item=True, body=patch_model)
    _annotate(replace_one, record, name, item=True, body=create_model)
    _annotate(delete_one, record, name)
    tags = [name]
    by_doc = f"Get a {name} by a unique property ({', '.join(unique) or 'none'})."
    return Router(
        path=f"/collections/{name}",
        tags=tags,
        route_handlers=[
            get("/", name=f"list{name}", summary=f"List {name} records")(list_),
            post("/search", name=f"search{name}", summary=f"Search {name} records (SEARCH alias)")(
                search
            ),
            get("/{record_id:int}", name=f"get{name}", summary=f"Get a {name}")(get_one),
            get("/by/{property_name:str}/{value:str}", name=f"get{name}By", summary=by_doc)(get_by),
            post("/", name=f"create{name}", summary=f"Create a {name}")(create),
            patch("/{record_id:int}", name=f"update{name}", summary=f"Update a {name}")(patch_one),
            put("/{record_id:int}", name=f"replace{name}", summary=f"Replace a {name}")(
                replace_one
            ),
            delete("/{record_id:int}", name=f"delete{name}", summary=f"Delete a {name}")(
                delete_one
            ),
        ],
    )


def _annotate(handler: Any, model: Any, name: str, *, item: bool = False, body: Any = None) -> None:
    """Give a closure the runtime annotations Litestar reads for validation and OpenAPI."""
    annotations = dict(handler.__annotations__)
    for key, value in list(annotations.items()):
        if key == "return":
            continue
        if value is Services:
            annotations[key] = NamedDependency[Services]
        elif value is Principal:
            annotations[key] = NamedDependency[Principal]
        elif key == "record_id":
            annotations[key] = Annotated[int, PathParameter(gt=0)]
        elif key in ("property_name", "value"):
            annotations[key] = Annotated[str, PathParameter(max_length=500)]
        elif key == "data":
            annotations[key] = _subscript(JSONBody, body if body is not None else SearchBody)
        elif key in _QUERY_NAMES:
            annotations[key] = Annotated[
                _QUERY_TYPES[key],
                QueryParameter(name=_QUERY_NAMES[key], description=_QUERY_DOCS[key]),
            ]
    returned = annotations.get("return")
    if returned is not None and returned is not type(None):
        wrapper = msgspec.defstruct(f"{name}One", [("data", model)]) if item else model
        search = returned is not dict and getattr(returned, "__origin__", None) is Response
        annotations["return"] = _subscript(Response, wrapper) if search else wrapper
    handler.__annotations__ = annotations


def _subscript(generic: Any, argument: Any) -> Any:
    """`generic[argument]` for a type built at runtime (a static checker cannot follow it)."""
    return generic[argument]


_QUERY_NAMES = {
    "filter_": "_filter",
    "order": "_order",
    "limit": "_limit",
    "offset": "_offset",
    "after": "_after",
    "fields": "_fields",
    "hide": "_hide",
    "count": "_count",
    "no_cache": "_noCache",
}
_QUERY_TYPES: dict[str, Any] = {
    "filter_": str | None,
    "order": str | None,
    "limit": Annotated[int, msgspec.Meta(ge=1, le=records.MAX_LIMIT)] | None,
    "offset": Annotated[int, msgspec.Meta(ge=0, le=records.MAX_OFFSET)] | None,
    "after": str | None,
    "fields": str | None,
    "hide": str | None,
    "count": Literal[0, 1] | None,
    "no_cache": Literal[0, 1] | None,
}
_QUERY_DOCS = {
    "filter_": "Query grammar, e.g. `status in ('open','won') and amount >= 10`.",
    "order": "Comma-separated fields, `-` for descending, e.g. `name,-created_on`.",
    "limit": f"Page size, default {records.DEFAULT_LIMIT}, at most {records.MAX_LIMIT}.",
    "offset": "Rows to skip (or use `_after`).",
    "after": "The `meta.next` cursor of the previous page.",
    "fields": "Comma-separated fields to show (id always shown).",
    "hide": "Comma-separated fields to hide.",
    "count": "1 adds `meta.total`, the exact count.",
    "no_cache": "1 bypasses the response cache.",
}
