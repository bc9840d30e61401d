"""GraphQL types generated from the tenant model, and their translation to resolver input.

Per API type `T` (names as in the tenant file, fields snake_case exactly as REST's JSON):

- `T`: the system fields and the `api` properties; a reference is the referenced
  object (a list for a multi-valued one), loaded through the request's DataLoader;
- `TPage { items, total, next }`;
- `TWhere`: the JSON form of the query grammar, typed (`and`, `or`, `not` and one
  filter per field; a reference takes the target's `Where`, sent as dotted paths);
- `TOrder { field: TOrderField!, desc }`;
- `TInput` (create and replace: required fields non-null) and `TPatch` (everything
  optional; an absent field is left alone, an explicit null clears it).

Classes are made empty first and filled in a second pass, so references between types
(Company ↔ Contact) and the self-references of `Where` need no lazy types.

A record is the decoded REST body (`schema.context.Record`); plain fields are read by the
schema's default resolver (`field_value`), which refuses a field the record lacks: REST
leaves out exactly the fields hidden from the caller's roles.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import keyword
import re
import string
from collections.abc import Callable, Mapping
from typing import Any, Optional, cast

import strawberry
from strawberry.types.base import get_object_definition

from resolvers.errors import Forbidden
from resolvers.tenant import Kind, Property, Tenant, TypeDef
from resolvers.values import SYSTEM_PROPERTIES
from schema import scalars
from schema.context import GraphQLContext, Record

__all__ = [
    "RECORD_RESOLVER",
    "REQUIRED",
    "RecordResolver",
    "TypeClasses",
    "build_types",
    "field_value",
    "input_json",
    "list_type",
    "maybe_type",
    "order_names",
    "where_json",
]

Info = strawberry.Info[GraphQLContext, None]

_LOGIC = ("and", "or", "not")
_WHERE_MARK = "__jgw_where__"
_UNORDERABLE = frozenset({Kind.FILE, Kind.TEXT})
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")

_SCALAR: Mapping[Kind, object] = {
    Kind.STRING: str,
    Kind.TEXT: str,
    Kind.EMAIL: str,
    Kind.PHONE: str,
    Kind.INTEGER: scalars.BigInt,
    Kind.REFERENCE: scalars.BigInt,
    Kind.DECIMAL: scalars.Decimal,
    Kind.BOOLEAN: bool,
    Kind.DATETIME: scalars.DateTime,
    Kind.DATE: scalars.Date,
    Kind.MONTH: scalars.Month,
    Kind.FILE: scalars.File,
}
_FILTER: Mapping[Kind, type] = {
    Kind.STRING: scalars.StringFilter,
    Kind.TEXT: scalars.StringFilter,
    Kind.EMAIL: scalars.StringFilter,
    Kind.PHONE: scalars.StringFilter,
    Kind.INTEGER: scalars.BigIntFilter,
    Kind.REFERENCE: scalars.BigIntFilter,
    Kind.DECIMAL: scalars.DecimalFilter,
    Kind.BOOLEAN: scalars.BooleanFilter,
    Kind.DATETIME: scalars.DateTimeFilter,
    Kind.DATE: scalars.DateFilter,
    Kind.MONTH: scalars.MonthFilter,
    Kind.FILE: scalars.FileFilter,
}


@dataclasses.dataclass(frozen=True, slots=True)
class TypeClasses:
    """The generated classes of one tenant type and the names of its root fields."""

    type_def: TypeDef
    single: str
    """lowerCamel: `company(id)`, `companyByRegistrationNo(value)`."""
    plural: str
    """`companies(...)`."""
    object: type
    page: type
    where: type
    order: type
    order_field: type[enum.Enum]
    create: type
    patch: type
    fields: tuple[str, ...]
    """Every field of `object`, system fields first (to fill a write's bare readback)."""


# --- names ---------------------------------------------------------------------------


def lower_camel(name: str) -> str:
    """`Company` → `company`, `URLMap` → `urlMap`."""
    run = len(name) - len(name.lstrip(string.ascii_uppercase))
    if run <= 1:
        return name[:1].lower() + name[1:]
    if run == len(name):
        return name.lower()
    return name[: run - 1].lower() + name[run - 1 :]


def plural(name: str) -> str:
    """English plural of the last word: `company` → `companies`, `deal` → `deals`."""
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", name):
        return name + "es"
    return name + "s"


def pascal(name: str) -> str:
    """`registration_no` → `RegistrationNo`."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _python_name(name: str) -> str:
    """A Python attribute for a property; property names are lowercase, so `K` is free."""
    return f"{name}_K" if keyword.iskeyword(name) else name


def _enum_members(values: tuple[str, ...]) -> dict[str, str]:
    """GraphQL-safe member names (`public sector` → `public_sector`) for the tenant's values."""
    members: dict[str, str] = {}
    for value in values:
        name = re.sub(r"[^_0-9A-Za-z]", "_", value)
        if not _GRAPHQL_NAME.fullmatch(name) or name[0] == "_":
            name = f"v_{name}"
        if name in ("true", "false", "null"):
            name = name.upper()
        base, n = name, 2
        while name in members:
            name, n = f"{base}_{n}", n + 1
        members[name] = value
    return members


# --- reading records ------------------------------------------------------------------

RECORD_RESOLVER = "__jgw_record_resolver__"
"""The attribute of a generated field resolver holding its core, `(record, context) ->
value`, which `schema.execution.RecordExecutor` calls directly: these fields take no
arguments, so strawberry's per-call wrapper (an `Info`, argument conversion, the
extension chain) adds nothing to what they return."""

RecordResolver = Callable[[Record, GraphQLContext], object]


def field_value(source: object, name: str) -> object:
    """The schema's default resolver: a record's field, or `forbidden` if REST left it out."""
    if type(source) is dict:
        try:
            return source[name]
        except KeyError:
            raise Forbidden(f"the field {name!r} is hidden from you") from None
    return getattr(source, name)


def _as_list(value: object) -> list[Any]:
    """A multi-valued field in the `compact` shape (null, one bare value, a list) as a list."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# --- building ------------------------------------------------------------------------


def _empty(name: str) -> type:
    return type(name, (), {"__module__": __name__})


def build_types(tenant: Tenant) -> dict[str, TypeClasses]:
    """Every API type's classes, keyed by type name."""
    api = {t.name: t for t in tenant.api_types()}
    shells: dict[str, TypeClasses] = {}
    for type_def in api.values():
        name = type_def.name
        single = lower_camel(name)
        fields = (*SYSTEM_PROPERTIES, *(p.name for p in type_def.properties.values() if p.api))
        shells[name] = TypeClasses(
            type_def=type_def,
            single=single,
            plural=plural(single),
            object=_empty(name),
            page=_empty(f"{name}Page"),
            where=_empty(f"{name}Where"),
            order=_empty(f"{name}Order"),
            order_field=_order_field(type_def),
            create=_empty(f"{name}Input"),
            patch=_empty(f"{name}Patch"),
            fields=fields,
        )
    enums = {
        (t.name, p.name): _enum(t, p)
        for t in api.values()
        for p in t.properties.values()
        if p.api and p.kind is Kind.ENUM
    }
    for classes in shells.values():
        _fill_object(tenant, classes, shells, enums)
        _fill_page(classes)
        _fill_where(classes, shells, enums)
        _fill_order(classes)
        _fill_input(classes, enums, complete=True)
        _fill_input(classes, enums, complete=False)
    return shells


def _enum(type_def: TypeDef, prop: Property) -> type[enum.Enum]:
    # A str-based enum: the resolvers' rendered string is one of its members already.
    members = _enum_members(prop.values)
    made = enum.Enum(f"{type_def.name}{pascal(prop.name)}", members, type=str)  # type: ignore[misc]  # the functional API with a mixin type
    return strawberry.enum(made)


def _order_field(type_def: TypeDef) -> type[enum.Enum]:
    names = [*SYSTEM_PROPERTIES]
    names += [
        p.name
        for p in type_def.properties.values()
        if p.api and not p.multiple and p.kind not in _UNORDERABLE
    ]
    made = enum.Enum(f"{type_def.name}OrderField", {n: n for n in names}, type=str)  # type: ignore[misc]  # as above
    return strawberry.enum(made, description=f"Fields a {type_def.name} list can be ordered by.")


def _system_annotations() -> dict[str, object]:
    return {
        "id": scalars.BigInt,
        "created_on": maybe_type(scalars.DateTime),
        "updated_on": maybe_type(scalars.DateTime),
        "created_by": maybe_type(scalars.BigInt),
        "updated_by": maybe_type(scalars.BigInt),
    }


def _fill_object(
    tenant: Tenant,
    classes: TypeClasses,
    shells: Mapping[str, TypeClasses],
    enums: Mapping[tuple[str, str], type[enum.Enum]],
) -> None:
    cls = classes.object
    type_def = classes.type_def
    compact = tenant.multiple_value_shape == "compact"
    annotations = _system_annotations()
    for prop in type_def.properties.values():
        if not prop.api:
            continue
        target = shells.get(prop.to or "") if prop.kind is Kind.REFERENCE else None
        python = _python_name(prop.name)
        if target is not None:
            returned: object = (
                list_type(maybe_type(target.object)) if prop.multiple else maybe_type(target.object)
            )
            resolver = _reference_resolver(prop, target.type_def.name, returned)
            setattr(cls, python, strawberry.field(resolver=resolver, name=prop.name))
            continue
        single = enums.get((type_def.name, prop.name)) or _SCALAR[prop.kind]
        value_type = list_type(single) if prop.multiple else maybe_type(single)
        if (prop.multiple and compact) or python != prop.name:
            resolver = _plain_resolver(prop.name, value_type, as_list=prop.multiple and compact)
            setattr(cls, python, strawberry.field(resolver=resolver, name=prop.name))
        else:
            annotations[python] = value_type
    cls.__annotations__ = annotations
    strawberry.type(cls, description=f"A {type_def.name} as the caller may see it.")


def _plain_resolver(name: str, returned: object, *, as_list: bool) -> Any:
    def value_of(root: Record, _context: GraphQLContext | None = None) -> object:
        value = field_value(root, name)
        return _as_list(value) if as_list else value

    def resolve(root: Record) -> object:
        return value_of(root)

    resolve.__signature__ = _signature([], returned, root=True, info=False)  # type: ignore[attr-defined]
    setattr(resolve, RECORD_RESOLVER, value_of)
    return resolve


def _reference_resolver(prop: Property, target: str, returned: object) -> Any:
    """The referenced record(s), through the request's DataLoader.

    Not a coroutine: the load is queued when the field is resolved, and the DataLoader's
    future is what graphql-core awaits (the loads of a list still share one batch). An
    error (a hidden field) is raised where the field is awaited, as when this was a
    coroutine: which of several errors in a list is reported stays the same.
    """
    name = prop.name

    def reference(root: Record, context: GraphQLContext) -> object:
        try:
            value = field_value(root, name)
            readable = not context.acting().on(target).read.none
        except Exception as error:  # noqa: BLE001 - raised again, where graphql-core awaits
            return _raising(error)
        if prop.multiple:
            ids = _as_list(value)
            if not readable:
                return [None] * len(ids)
            return context.loader(target).load_many(ids)
        if value is None or not readable:
            return None
        return context.loader(target).load(cast("int", value))

    def resolve(root: Record, info: Info) -> object:
        return reference(root, info.context)

    resolve.__signature__ = _signature([], returned, root=True)  # type: ignore[attr-defined]
    setattr(resolve, RECORD_RESOLVER, reference)
    return resolve


async def _raising(error: Exception) -> object:
    raise error


def _fill_page(classes: TypeClasses) -> None:
    cls = classes.page
    cls.__annotations__ = {
        "items": list_type(classes.object),
        "total": maybe_type(scalars.BigInt),
        "next": str | None,
    }
    cls.total = strawberry.field(description="Every match; only when asked with `count`.")  # type: ignore[attr-defined]
    cls.next = strawberry.field(description="Pass as `after` for the next page; null on the last.")  # type: ignore[attr-defined]
    strawberry.type(cls, description=f"One page of {classes.type_def.name} records.")


def _fill_where(
    classes: TypeClasses,
    shells: Mapping[str, TypeClasses],
    enums: Mapping[tuple[str, str], type[enum.Enum]],
) -> None:
    cls = classes.where
    annotations: dict[str, object] = {
        "and_K": maybe_type(list_type(cls)),
        "or_K": maybe_type(list_type(cls)),
        "not_K": maybe_type(cls),
    }
    cls.and_K = strawberry.field(name="and", default=strawberry.UNSET)  # type: ignore[attr-defined]
    cls.or_K = strawberry.field(name="or", default=strawberry.UNSET)  # type: ignore[attr-defined]
    cls.not_K = strawberry.field(name="not", default=strawberry.UNSET)  # type: ignore[attr-defined]
    props = [*SYSTEM_PROPERTIES.values(), *classes.type_def.properties.values()]
    for prop in props:
        if not prop.api or prop.name in _LOGIC:
            continue  # a property named like a logic key cannot be written in the JSON form
        target = shells.get(prop.to or "") if prop.kind is Kind.REFERENCE else None
        python = _python_name(prop.name)
        if target is not None:
            kind_filter: object = target.where
        elif (found := enums.get((classes.type_def.name, prop.name))) is not None:
            kind_filter = _enum_filter(found)
        else:
            kind_filter = _FILTER[prop.kind]
        annotations[python] = maybe_type(kind_filter)
        setattr(cls, python, strawberry.field(name=prop.name, default=strawberry.UNSET))
    cls.__annotations__ = annotations
    setattr(cls, _WHERE_MARK, True)
    strawberry.input(
        cls,
        description=f"Conditions on {classes.type_def.name} records (the JSON form of the "
        "query grammar): fields side by side must all hold.",
    )


def _enum_filter(values: type[enum.Enum]) -> type:
    cls = _empty(f"{values.__name__}Filter")
    cls.__annotations__ = {
        "eq": maybe_type(values),
        "ne": maybe_type(values),
        "in_": maybe_type(list_type(values)),
        "isnull": bool | None,
    }
    cls.eq = strawberry.UNSET  # type: ignore[attr-defined]
    cls.ne = strawberry.UNSET  # type: ignore[attr-defined]
    cls.in_ = strawberry.field(name="in", default=strawberry.UNSET)  # type: ignore[attr-defined]
    cls.isnull = strawberry.UNSET  # type: ignore[attr-defined]
    return strawberry.input(cls, description=f"Conditions on a {values.__name__}.")


def _fill_order(classes: TypeClasses) -> None:
    cls = classes.order
    cls.__annotations__ = {"field": classes.order_field, "desc": bool}
    cls.desc = False  # type: ignore[attr-defined]
    strawberry.input(cls, description="One sort key; `id` ends every order as the tie-break.")


def _fill_input(
    classes: TypeClasses, enums: Mapping[tuple[str, str], type[enum.Enum]], *, complete: bool
) -> None:
    cls = classes.create if complete else classes.patch
    type_def = classes.type_def
    annotations: dict[str, object] = {}
    optional: list[str] = []
    for prop in type_def.properties.values():
        if not prop.api or prop.kind is Kind.FILE:
            continue
        single = enums.get((type_def.name, prop.name)) or _SCALAR[prop.kind]
        value_type = list_type(single) if prop.multiple else single
        python = _python_name(prop.name)
        if complete and prop.required:
            annotations[python] = value_type
            setattr(cls, python, strawberry.field(name=prop.name))
        else:
            annotations[python] = maybe_type(value_type)
            optional.append(python)
            setattr(cls, python, strawberry.field(name=prop.name, default=strawberry.UNSET))
    # Required fields first: the generated dataclass takes them without defaults.
    cls.__annotations__ = dict(sorted(annotations.items(), key=lambda item: item[0] in optional))
    what = (
        "every writable field (those left out become null)"
        if complete
        else "only the fields given change; null clears one"
    )
    strawberry.input(cls, description=f"A {type_def.name} to write: {what}.")


# --- resolver signatures ----------------------------------------------------------------


def _signature(
    parameters: list[tuple[str, object, object]],
    returned: object,
    *,
    root: bool = False,
    info: bool = True,
) -> inspect.Signature:
    """A signature strawberry reads: `root`/`info`, then keyword-only GraphQL arguments."""
    kind = inspect.Parameter.KEYWORD_ONLY
    listed = [inspect.Parameter("info", kind, annotation=Info)] if info else []
    if root:
        listed.insert(0, inspect.Parameter("root", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    listed += [
        inspect.Parameter(name, kind, annotation=annotation, default=default)
        for name, annotation, default in parameters
    ]
    return inspect.Signature(listed, return_annotation=returned)


def resolver_with(
    function: Any, parameters: list[tuple[str, object, object]], returned: object, *, name: str
) -> Any:
    """`function` (taking `info` and keyword arguments) as the resolver of root field `name`.

    The root types are dataclasses keyed by the resolvers' names: each gets its field's.
    """
    function.__signature__ = _signature(parameters, returned)
    function.__name__ = function.__qualname__ = name
    return function


def maybe_type(item: Any) -> Any:
    """`item | None` for a class or scalar built at runtime (beyond a static checker)."""
    return Optional[item]  # noqa: UP045 - NewType scalars have no `|` for a checker either


def list_type(item: Any) -> Any:
    """`list[item]` for a class built at runtime."""
    return list[item]


REQUIRED: Any = inspect.Parameter.empty
"""The default of a resolver parameter without one (a required argument)."""


# --- GraphQL input → resolver input ---------------------------------------------------


def _plain(value: object) -> object:
    """An input value as JSON would carry it: enums by value, lists element by element."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _set_fields(value: object) -> list[tuple[str, object]]:
    """(GraphQL name, value) of every field the client gave (explicit nulls included)."""
    definition = get_object_definition(value, strict=True)
    found = []
    for field in definition.fields:
        item = getattr(value, field.python_name)
        if item is not strawberry.UNSET:
            found.append((field.graphql_name or field.python_name, item))
    return found


def where_json(where: object, prefix: str = "") -> dict[str, Any]:
    """The JSON form of the query grammar for a `<T>Where` (empty: no condition).

    A reference's `Where` becomes dotted paths (`{company: {name: ...}}` →
    `{"company.name": ...}`), its logic keys stay logic keys around them.
    """
    parts: list[dict[str, Any]] = []
    for name, value in _set_fields(where):
        if value is None:
            continue
        if name in ("and", "or"):
            parts.append({name: [where_json(item, prefix) for item in value]})  # type: ignore[attr-defined]
        elif name == "not":
            parts.append({"not": where_json(value, prefix)})
        elif getattr(type(value), _WHERE_MARK, False):
            nested = where_json(value, f"{prefix}{name}.")
            if nested:
                parts.append(nested)
        else:
            parts.append({f"{prefix}{name}": dict(_operators(value))})
    keys = [next(iter(p)) for p in parts if len(p) == 1]
    if len(keys) == len(parts) and len(set(keys)) == len(keys):
        return {k: v for p in parts for k, v in p.items()}
    return {"and": parts}


def _operators(value: object) -> list[tuple[str, object]]:
    return [(op, _plain(operand)) for op, operand in _set_fields(value)]


def order_names(order: list[Any]) -> list[str]:
    """`[{field: name, desc: true}]` → `["-name"]`, as REST's `order`."""
    return [("-" if item.desc else "") + str(_plain(item.field)) for item in order]


def input_json(data: object) -> dict[str, Any]:
    """A `<T>Input`/`<T>Patch` as the JSON body REST would pass (absent fields left out)."""
    return {name: _plain(value) for name, value in _set_fields(data)}
