"""`/api/v1/collections/{T}`: one router per tenant type, so OpenAPI shows real properties.

Each handler only translates HTTP into a `resolvers.collections` call: the control
parameters (`_filter`, `_order`, ...) and the SEARCH body both become a `ListQuery`.
Write bodies reach `resolvers` as decoded JSON, unconverted: the resolvers validate
every field by its kind and report every wrong field at once.

The models built here document the API. Their schemas are written from the tenant
model to match exactly what `resolvers.values` accepts (`coerce`) and renders
(`render`): decimals as strings with the property's scale, months as `YYYY-MM`, instants
as ISO 8601 with the caller's offset, multi-valued properties in the tenant's
`multiple_value_shape`.
"""

# No `from __future__ import annotations` here: the handlers' annotations must be real
# objects, since `_annotate` rewrites them for Litestar at runtime.
import dataclasses
import re
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    Schema,
)
from litestar.params import JSONBody, PathParameter, SkipValidation

from resolvers import collections as records
from resolvers import reads
from resolvers.errors import FieldError, Invalid
from resolvers.services import Services
from resolvers.storage import MAX_ID
from resolvers.tenant import Kind, Property, Tenant, TypeDef
from resolvers.values import MAX_ITEMS, SYSTEM_PROPERTIES, USERS
from rest.caching import CACHED_HEADERS, NOT_MODIFIED, cached_response, wants_fresh
from rest.openapi import Ref, documented, problems
from rest.v1.files import create_hook, create_operation
from rest.v1.list_params import DECLARED, MAX_CURSOR, ListParams, equalities
from rest.v1.security import caller

__all__ = ["collection_routers"]

_INT64_MIN, _INT64_MAX = -(2**63), MAX_ID
_MAX_NAMES = 200
_MAX_TEXT_INPUT = 64  # resolvers.values: longer dates, months and instants are never valid
_MAX_EMAIL = 254
_MAX_PHONE = 32

_READ_PROBLEMS = {**problems(400, 401, 403, 422), **NOT_MODIFIED}
_ITEM_PROBLEMS = {**problems(400, 401, 403, 404, 422), **NOT_MODIFIED}
_BY_PROBLEMS = {**problems(400, 401, 403, 404, 422), **NOT_MODIFIED}
_CREATE_PROBLEMS = problems(400, 401, 403, 409, 422)
_WRITE_PROBLEMS = problems(400, 401, 403, 404, 409, 422)
_DELETE_PROBLEMS = problems(400, 401, 403, 404, 409)


# --- schema pieces ----------------------------------------------------------------


_STRING = OpenAPIType.STRING
_INTEGER = OpenAPIType.INTEGER
_NULL = OpenAPIType.NULL


def _nullable(schema: Schema | Reference) -> Schema:
    """`schema` or JSON null."""
    if isinstance(schema, Schema) and schema.type is not None:
        types = [schema.type] if isinstance(schema.type, OpenAPIType) else list(schema.type)
        enum = None if schema.enum is None else [*schema.enum, None]
        return dataclasses.replace(schema, type=[*types, _NULL], enum=enum)
    return Schema(one_of=[schema, Schema(type=_NULL)])


def _object(
    properties: dict[str, Any], *, required: list[str], description: str | None = None
) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        properties=properties,
        required=required,
        additional_properties=False,
        description=description,
    )


def _id(of: str | None) -> Schema:
    what = "user" if of == USERS else of
    return Schema(type=_INTEGER, minimum=1, maximum=_INT64_MAX, description=f"The id of a {what}.")


def _decimal_pattern(prop: Property) -> str:
    whole = f"[0-9]{{1,{max(1, prop.precision - prop.scale)}}}"
    places = rf"\.[0-9]{{{prop.scale}}}" if prop.scale else ""
    return f"^-?{whole}{places}$"


def _rendered(prop: Property, ref: Ref) -> Any:
    """One value as `resolvers.values.render` writes it."""
    match prop.kind:
        case Kind.STRING | Kind.TEXT:
            return Schema(type=_STRING, max_length=prop.max_length)
        case Kind.EMAIL:
            limit = min(_MAX_EMAIL, prop.max_length or _MAX_EMAIL)
            return Schema(type=_STRING, max_length=limit, pattern="^[^@]+@[^@]+$")
        case Kind.PHONE:
            limit = min(_MAX_PHONE, prop.max_length or _MAX_PHONE)
            return Schema(
                type=_STRING,
                max_length=limit,
                pattern=r"^\+?[0-9]{4,}$",
                description="Digits only, with an optional leading +.",
            )
        case Kind.INTEGER:
            return Schema(type=_INTEGER, minimum=_INT64_MIN, maximum=_INT64_MAX)
        case Kind.REFERENCE:
            return _id(prop.to)
        case Kind.DECIMAL:
            return Schema(
                type=_STRING,
                pattern=_decimal_pattern(prop),
                description=f"A decimal as text, exactly {prop.scale} places "
                f"(NUMERIC({prop.precision}, {prop.scale})).",
            )
        case Kind.BOOLEAN:
            return Schema(type=OpenAPIType.BOOLEAN)
        case Kind.DATETIME:
            return Schema(
                type=_STRING,
                format=OpenAPIFormat.DATE_TIME,
                description="ISO 8601 with the offset of the caller's zone.",
            )
        case Kind.DATE:
            return Schema(type=_STRING, format=OpenAPIFormat.DATE)
        case Kind.MONTH:
            return Schema(
                type=_STRING, pattern="^[0-9]{4}-(0[1-9]|1[0-2])$", description="YYYY-MM."
            )
        case Kind.ENUM:
            return Schema(type=_STRING, enum=list(prop.values))
        case Kind.FILE:
            return ref(FileInfo)
    raise AssertionError(prop.kind)  # pragma: no cover - the match is exhaustive


def _accepted(prop: Property) -> Schema:
    """One value as `resolvers.values.coerce` accepts it (never narrower)."""
    match prop.kind:
        case Kind.STRING | Kind.TEXT:
            return Schema(type=_STRING, max_length=prop.max_length)
        case Kind.EMAIL:
            limit = min(_MAX_EMAIL, prop.max_length or _MAX_EMAIL)
            return Schema(type=_STRING, max_length=limit, description="An e-mail address.")
        case Kind.PHONE:
            return Schema(
                type=_STRING,
                description="Digits with an optional leading +; spaces, dashes, dots and "
                "parentheses are dropped.",
            )
        case Kind.INTEGER:
            return Schema(type=_INTEGER, minimum=_INT64_MIN, maximum=_INT64_MAX)
        case Kind.REFERENCE:
            return _id(prop.to)
        case Kind.DECIMAL:
            return Schema(
                type=[_STRING, OpenAPIType.NUMBER],
                description=f"At most {prop.precision - prop.scale} digits before the point "
                f'and {prop.scale} after; never rounded. Send a string (`"12.50"`) to be '
                "exact: a JSON number is taken only when it has at most 15 significant digits.",
            )
        case Kind.BOOLEAN:
            return Schema(type=OpenAPIType.BOOLEAN)
        case Kind.DATETIME:
            return Schema(
                type=_STRING,
                max_length=_MAX_TEXT_INPUT,
                description="ISO 8601; without an offset it is read in the caller's zone "
                "(a time a DST change skips or repeats is refused). 1900 to 9998.",
            )
        case Kind.DATE:
            return Schema(type=_STRING, max_length=_MAX_TEXT_INPUT, description="YYYY-MM-DD.")
        case Kind.MONTH:
            return Schema(
                type=_STRING, max_length=_MAX_TEXT_INPUT, description="YYYY-MM (or a date in it)."
            )
        case Kind.ENUM:
            return Schema(type=_STRING, enum=list(prop.values))
        case Kind.FILE:  # pragma: no cover - files are not in write bodies
            raise AssertionError(prop.kind)
    raise AssertionError(prop.kind)  # pragma: no cover - the match is exhaustive


def _output_schema(prop: Property, shape: str, ref: Ref) -> Any:
    single = _rendered(prop, ref)
    if not prop.multiple:
        return _nullable(single)
    many = Schema(
        type=OpenAPIType.ARRAY,
        items=single,
        max_items=MAX_ITEMS,
        unique_items=True if prop.kind is Kind.REFERENCE else None,
    )
    if shape != "compact":
        return many
    many.min_items = 2
    return Schema(
        one_of=[Schema(type=_NULL), single, many],
        description="Compact shape: null for none, the value itself for one, a list for more.",
    )


def _input_schema(prop: Property) -> Schema:
    single = _accepted(prop)
    if prop.multiple:
        items = Schema(type=OpenAPIType.ARRAY, items=single, max_items=MAX_ITEMS)
        if prop.required:
            items.min_items = 1
        single = items
    if prop.required:
        return single
    return _nullable(single)


def _writable(type_def: TypeDef) -> list[Property]:
    return [p for p in type_def.properties.values() if p.api and p.kind is not Kind.FILE]


def _record_schema(tenant: Tenant, type_def: TypeDef) -> Callable[[Ref], Schema]:
    def build(ref: Ref) -> Schema:
        system = {
            "id": _id(type_def.name),
            "created_on": _rendered(SYSTEM_PROPERTIES["created_on"], ref),
            "updated_on": _rendered(SYSTEM_PROPERTIES["updated_on"], ref),
            "created_by": _nullable(_id("user")),
            "updated_by": _nullable(_id("user")),
        }
        own = {
            p.name: _output_schema(p, tenant.multiple_value_shape, ref)
            for p in type_def.properties.values()
            if p.api
        }
        return _object(
            {**system, **own},
            required=["id"],
            description=f"A {type_def.name} as the caller may see it. Only `id` is always "
            "present: fields hidden from the caller's role, left out by `_fields`/`_hide`, "
            "or (after a write) on a record outside the caller's read scope are absent.",
        )

    return build


def _body_schema(type_def: TypeDef, *, complete: bool) -> Callable[[Ref], Schema]:
    what = (
        "every writable field; those left out become null"
        if complete
        else "only the fields sent change"
    )

    def build(_ref: Ref) -> Schema:
        writable = _writable(type_def)
        return _object(
            {p.name: _input_schema(p) for p in writable},
            required=[p.name for p in writable if p.required] if complete else [],
            description=f"A {type_def.name}: {what}. Unknown, system, read-only and hidden "
            "fields are refused (422), never dropped. Files are uploaded to "
            "`/{id}/files/{property}`.",
        )

    return build


def _page_schema(record: type) -> Callable[[Ref], Schema]:
    def build(ref: Ref) -> Schema:
        return _object(
            {"data": Schema(type=OpenAPIType.ARRAY, items=ref(record)), "meta": ref(Meta)},
            required=["data", "meta"],
        )

    return build


def _one_schema(record: type) -> Callable[[Ref], Schema]:
    def build(ref: Ref) -> Schema:
        return _object({"data": ref(record)}, required=["data"])

    return build


def _file_info_schema(_ref: Ref) -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "name": Schema(type=_STRING),
            "size": Schema(type=_INTEGER, minimum=0),
            "content_type": Schema(type=_STRING),
            "sha256": Schema(type=_STRING, pattern="^[0-9a-f]{64}$"),
            "url": Schema(type=_STRING),
        },
        required=["name", "size", "content_type", "sha256", "url"],
        description="A stored file; `url` streams it back.",
    )


def _meta_schema(_ref: Ref) -> Schema:
    return _object(
        {
            "limit": Schema(type=_INTEGER, minimum=1, maximum=records.MAX_LIMIT),
            "offset": Schema(type=_INTEGER, minimum=0, maximum=records.MAX_OFFSET),
            "total": Schema(type=_INTEGER, minimum=0, description="With `_count=1`: every match."),
            "next": Schema(
                type=_STRING,
                description="Pass as `_after` for the next page; absent on the last page.",
            ),
        },
        required=["limit", "offset"],
    )


def _names_schema(what: str) -> Schema:
    return Schema(
        one_of=[
            Schema(type=_STRING, description="Comma-separated."),
            Schema(type=OpenAPIType.ARRAY, items=Schema(type=_STRING), max_items=_MAX_NAMES),
            Schema(type=_NULL),
        ],
        description=what,
    )


def _search_schema(_ref: Ref) -> Schema:
    return _object(
        {
            "filter": Schema(
                one_of=[
                    Schema(type=_STRING, description="The text form of the query grammar."),
                    Schema(
                        type=OpenAPIType.OBJECT, description="The JSON form of the query grammar."
                    ),
                    Schema(type=_NULL),
                ]
            ),
            "order": _names_schema("Fields, `-` for descending."),
            "limit": _nullable(Schema(type=_INTEGER, minimum=1, maximum=records.MAX_LIMIT)),
            "offset": _nullable(Schema(type=_INTEGER, minimum=0, maximum=records.MAX_OFFSET)),
            "after": _nullable(
                Schema(type=_STRING, max_length=MAX_CURSOR, description="A previous `meta.next`.")
            ),
            "fields": _names_schema("Show only these (and `id`)."),
            "hide": _names_schema("Hide these."),
            "count": _nullable(Schema(type=OpenAPIType.BOOLEAN, description="Add `meta.total`.")),
        },
        required=[],
        description="The list parameters, for queries too long for a URL.",
    )


# --- models -----------------------------------------------------------------------


class FileInfo:
    __jgw_openapi__ = staticmethod(_file_info_schema)


class Meta:
    __jgw_openapi__ = staticmethod(_meta_schema)


_Names = str | list[str]


class SearchBody(msgspec.Struct, forbid_unknown_fields=True):
    """The SEARCH body, decoded strictly (`_strict`): a string is never taken for a number."""

    __jgw_openapi__ = staticmethod(_search_schema)

    filter: str | dict[str, Any] | None = None
    order: _Names | None = None
    limit: int | None = None
    offset: int | None = None
    after: str | None = None
    fields: _Names | None = None
    hide: _Names | None = None
    count: bool | None = None


def _model(name: str, build: Callable[[Ref], Schema]) -> type:
    """A documentation-only type: its name is the component's, `build` its schema."""
    return type(name, (), {**documented(build), "__module__": __name__})


@dataclasses.dataclass(frozen=True, slots=True)
class _Models:
    record: type
    page: type
    one: type
    create: type
    patch: type


def _models(tenant: Tenant, type_def: TypeDef) -> _Models:
    name = type_def.name
    record = _model(name, _record_schema(tenant, type_def))
    return _Models(
        record=record,
        page=_model(f"{name}Page", _page_schema(record)),
        one=_model(f"{name}One", _one_schema(record)),
        create=_model(f"{name}Create", _body_schema(type_def, complete=True)),
        patch=_model(f"{name}Patch", _body_schema(type_def, complete=False)),
    )


# --- request values ---------------------------------------------------------------

_PATH = re.compile(r"at `\$((?:\.[^.`\[]+|\[\d+\])*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]{1,100})`")


def _strict(raw: object, model: type[msgspec.Struct]) -> Any:
    """Decode a JSON value into `model` without msgspec's lax conversions."""
    try:
        return msgspec.convert(raw, model, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if unknown := _UNKNOWN.search(text):
            error = FieldError(unknown.group(1), "unknown field")
        else:
            where = _PATH.search(text)
            field = where.group(1).lstrip(".") if where and where.group(1) else "body"
            error = FieldError(field, _PATH.sub("", text).strip(" -") or text)
        raise Invalid("the body is not valid", [error]) from exc


def _body(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", [FieldError("body", "expected an object")])
    return data


# --- routes -----------------------------------------------------------------------


def collection_routers(tenant: Tenant) -> list[Router]:
    return [_router(tenant, t) for t in tenant.types.values() if t.api]


def _router(tenant: Tenant, type_def: TypeDef) -> Router:
    name = type_def.name
    models = _models(tenant, type_def)
    unique = [p.name for p in type_def.properties.values() if p.unique and p.api]

    async def list_(
        *,
        request: Request[Any, Any, Any],
        services: Services,
        filter_: str = "",
        order: str = "",
        limit: int = records.DEFAULT_LIMIT,
        offset: int = 0,
        after: str = "",
        fields: str = "",
        hide: str = "",
        count: int = 0,
        no_cache: int = 0,
    ) -> Response[bytes]:
        """Records in the caller's read scope; unknown query parameters are equality filters."""
        principal = await caller()
        query = ListParams(
            filter_=filter_,
            order=order,
            limit=limit,
            offset=offset,
            after=after,
            fields=fields,
            hide=hide,
            count=count,
            equals=equalities(request.query_params.items()),
        ).list_query()
        fresh = wants_fresh(request, no_cache)
        found = await reads.list_body(services, principal, name, query, fresh=fresh)
        return cached_response(request, found)

    async def search(
        request: Request[Any, Any, Any], data: Any, services: Services
    ) -> Response[bytes]:
        """The same as the list, with the parameters in a JSON body (also sent as SEARCH)."""
        principal = await caller()
        body: SearchBody = _strict(data, SearchBody)
        query = records.list_query(
            filter=body.filter,
            order=body.order,
            limit=body.limit,
            offset=body.offset,
            after=body.after,
            fields=body.fields,
            hide=body.hide,
            count=body.count,
            filter_field="filter",
        )
        fresh = wants_fresh(request, request.query_params.get("_noCache") == "1")
        found = await reads.list_body(services, principal, name, query, fresh=fresh)
        return cached_response(request, found)

    async def get_one(
        *,
        request: Request[Any, Any, Any],
        record_id: int,
        services: Services,
        no_cache: int = 0,
    ) -> Response[bytes]:
        principal = await caller()
        fresh = wants_fresh(request, no_cache)
        found = await reads.record_body(services, principal, name, record_id, fresh=fresh)
        return cached_response(request, found)

    async def get_by(
        *,
        request: Request[Any, Any, Any],
        property_name: str,
        value: str,
        services: Services,
        no_cache: int = 0,
    ) -> Response[bytes]:
        principal = await caller()
        fresh = wants_fresh(request, no_cache)
        found = await reads.record_by_body(
            services, principal, name, property_name, value, fresh=fresh
        )
        return cached_response(request, found)

    async def create(data: Any, services: Services) -> dict[str, Any]:
        principal = await caller()
        return {"data": await records.create_record(services, principal, name, _body(data))}

    async def patch_one(record_id: int, data: Any, services: Services) -> dict[str, Any]:
        principal = await caller()
        changed = await records.update_record(services, principal, name, record_id, _body(data))
        return {"data": changed}

    async def replace_one(record_id: int, data: Any, services: Services) -> dict[str, Any]:
        principal = await caller()
        changed = await records.update_record(
            services, principal, name, record_id, _body(data), replace=True
        )
        return {"data": changed}

    async def delete_one(record_id: int, services: Services) -> None:
        principal = await caller()
        await records.delete_record(services, principal, name, record_id)

    _annotate(list_, models.page)
    _annotate(search, models.page, body=SearchBody)
    _annotate(get_one, models.one)
    _annotate(get_by, models.one, unique=unique)
    _annotate(create, models.one, body=models.create)
    _annotate(patch_one, models.one, body=models.patch)
    _annotate(replace_one, models.one, body=models.create)
    _annotate(delete_one, None)
    keys = (
        ", ".join(unique) if unique else f"none: {name} has no unique property, every name is 422"
    )
    listing = _with_parameters(_equality_parameters(type_def))
    return Router(
        path=f"/collections/{name}",
        tags=[name],
        route_handlers=[
            get(
                "/",
                name=f"list{name}",
                summary=f"List {name} records",
                responses=_READ_PROBLEMS,
                response_headers=CACHED_HEADERS,
                operation_class=listing,
            )(list_),
            post(
                "/search",
                name=f"search{name}",
                summary=f"Search {name} records (SEARCH alias)",
                status_code=200,
                responses=_READ_PROBLEMS,
                response_headers=CACHED_HEADERS,
            )(search),
            get(
                "/{record_id:int}",
                name=f"get{name}",
                summary=f"Get a {name}",
                responses=_ITEM_PROBLEMS,
                response_headers=CACHED_HEADERS,
            )(get_one),
            get(
                "/by/{property_name:str}/{value:str}",
                name=f"get{name}By",
                summary=f"Get a {name} by a unique property ({keys})",
                responses=_BY_PROBLEMS,
                response_headers=CACHED_HEADERS,
            )(get_by),
            post(
                "/",
                name=f"create{name}",
                summary=f"Create a {name}",
                responses=_CREATE_PROBLEMS,
                before_request=create_hook(name),  # multipart/form-data: a record with files
                operation_class=create_operation(type_def),
            )(create),
            patch(
                "/{record_id:int}",
                name=f"update{name}",
                summary=f"Update a {name}",
                responses=_WRITE_PROBLEMS,
            )(patch_one),
            put(
                "/{record_id:int}",
                name=f"replace{name}",
                summary=f"Replace a {name}",
                responses=_WRITE_PROBLEMS,
            )(replace_one),
            delete(
                "/{record_id:int}",
                name=f"delete{name}",
                summary=f"Delete a {name}",
                responses=_DELETE_PROBLEMS,
            )(delete_one),
        ],
    )


def _annotate(
    handler: Any, returned: type | None, *, body: Any = None, unique: list[str] | None = None
) -> None:
    """Give a closure the runtime annotations Litestar reads for validation and OpenAPI."""
    annotations = dict(handler.__annotations__)
    for key, value in list(annotations.items()):
        if key == "return":
            continue
        if value is Services:
            annotations[key] = NamedDependency[Services]
        elif key == "record_id":
            # Bounded like the id column: a larger number is a 400, never a driver overflow.
            annotations[key] = Annotated[int, PathParameter(gt=0, le=_INT64_MAX)]
        elif key == "property_name":
            annotations[key] = Annotated[
                str,
                PathParameter(
                    max_length=500,
                    description="A unique property.",
                    schema_extra={"enum": unique} if unique else None,
                ),
            ]
        elif key == "value":
            annotations[key] = Annotated[
                str, PathParameter(max_length=500, description="The value, written as in a URL.")
            ]
        elif key == "data":
            # Decoded JSON, unconverted: the resolvers (or `_strict`) check every field.
            annotations[key] = _subscript(JSONBody, _subscript(SkipValidation, body))
        elif key in DECLARED:
            annotations[key] = DECLARED[key]
    annotations["return"] = None if returned is None else returned
    handler.__annotations__ = annotations


def _subscript(generic: Any, argument: Any) -> Any:
    """`generic[argument]` for a type built at runtime (a static checker cannot follow it)."""
    return generic[argument]


def _equality_parameters(type_def: TypeDef) -> list[Parameter]:
    """`prop=value` query parameters: one per property a plain equality can test."""
    shown = [
        *(p for p in SYSTEM_PROPERTIES.values()),
        *(p for p in type_def.properties.values() if p.api and p.kind is not Kind.FILE),
    ]
    return [
        Parameter(
            name=prop.name,
            param_in="query",
            required=False,
            schema=_url_text(prop),
            description=f"Only records whose `{prop.name}` "
            + ("holds" if prop.multiple else "equals")
            + " this value (a hidden field is refused with 422).",
        )
        for prop in shown
    ]


def _url_text(prop: Property) -> Schema:
    """A value written as URL text, as `resolvers.values.coerce_text` reads it."""
    match prop.kind:
        case Kind.INTEGER | Kind.REFERENCE:
            return _accepted(prop)
        case Kind.BOOLEAN:
            return Schema(type=OpenAPIType.BOOLEAN)
        case Kind.ENUM:
            return Schema(type=_STRING, enum=list(prop.values))
        case _:
            return Schema(type=_STRING)


def _with_parameters(extra: list[Parameter]) -> type[Operation]:
    """An `Operation` that also documents `extra`, parameters the handler reads itself."""

    @dataclasses.dataclass
    class _Listing(Operation):
        def __post_init__(self) -> None:
            self.parameters = [*(self.parameters or []), *extra]

    return _Listing
