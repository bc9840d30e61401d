"""One GraphQL mutation per command of the tenant (`resolvers.commands`).

`deal.close` becomes `dealClose(input: DealCloseCommandInput!): DealCloseCommandResult!`,
which calls `resolvers.commands.run_command` exactly as `POST /api/v1/commands/deal.close`
does: the same rights (FORBIDDEN for a caller without them; the field exists for all),
the same strict validation of the input, the same transaction, the same result values.

The input and result types are generated from the commands' msgspec structs: integers are
`BigInt`, decimals `Decimal`, instants `DateTime`, dates `Date`, string literals and
string enums GraphQL enums, nested structs nested types, lists lists, `X | None` a
nullable `X`. Shapes GraphQL cannot say (dicts, `Any`, other unions, array-like or
tagged structs, non-string enums) are the `JSON` scalar. A result struct without fields
is `Boolean` (always true); an input struct without fields takes no argument.
"""

from __future__ import annotations

import enum
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import msgspec.inspect as mi
import strawberry
from strawberry.scalars import JSON
from strawberry.types.field import StrawberryField

from resolvers.commands import Command, load_commands, result_value, run_command
from resolvers.tenant import Tenant
from schema import scalars
from schema.context import GraphQLContext
from schema.types import REQUIRED, Info, list_type, maybe_type, resolver_with

__all__ = ["command_mutations"]

_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")

Convert = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class _Mapped:
    """A GraphQL annotation and how a value crosses it: GraphQL input → JSON value (for
    inputs), or JSON value → what the field returns (for results)."""

    annotation: Any
    convert: Convert = _same


_JSON = _Mapped(JSON)


def command_mutations(tenant: Tenant) -> list[StrawberryField]:
    """The tenant's commands as root mutations (a `schema.build.MutationSource`)."""
    return [_mutation(found) for found in load_commands(tenant)]


def _mutation(found: Command) -> StrawberryField:
    prefix = found.field_name[:1].upper() + found.field_name[1:] + "Command"
    builder = _Builder(prefix)
    builder.tops.update((found.input_type, found.result_type))
    input_info = mi.type_info(found.input_type)
    result_info = mi.type_info(found.result_type)
    assert isinstance(input_info, mi.StructType)  # noqa: S101 - commands take structs
    assert isinstance(result_info, mi.StructType)  # noqa: S101
    parameters: list[tuple[str, object, object]] = []
    to_json: Convert = _same
    if input_info.fields:
        mapped = builder.input_struct(input_info, f"{prefix}Input")
        to_json = mapped.convert
        if any(f.required for f in input_info.fields):
            parameters.append(("input", mapped.annotation, REQUIRED))
        else:
            parameters.append(("input", maybe_type(mapped.annotation), None))
    if result_info.fields:
        result = builder.output_struct(result_info, f"{prefix}Result")
    else:
        result = _Mapped(bool, lambda _value: True)
    name = found.name

    async def resolve(info: Info, **arguments: Any) -> Any:
        context: GraphQLContext = info.context
        given = arguments.get("input")
        payload = {} if given is None else to_json(given)
        done = await run_command(context.services, context.acting(), name, payload)
        return result.convert(result_value(done))

    resolver_with(resolve, parameters, result.annotation, name=found.field_name)
    resolve.__doc__ = found.description
    field = strawberry.field(resolver=resolve, name=found.field_name, description=found.description)
    return cast("StrawberryField", field)


def _graphql_name(name: str) -> str:
    return name if _NAME.fullmatch(name) and not name.startswith("__") else ""


def _python_name(name: str, taken: set[str]) -> str:
    """A Python attribute for a GraphQL field (`class` → `class_`), unique in its type."""
    base = re.sub(r"\W", "_", name) or "field"
    if base[0].isdigit() or keyword.iskeyword(base):
        base = f"f_{base}"
    found, n = base, 2
    while found in taken:
        found, n = f"{base}_{n}", n + 1
    taken.add(found)
    return found


class _Builder:
    """Generates the types of one command; nested structs are named after it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.inputs: dict[type, _Mapped] = {}
        self.outputs: dict[type, _Mapped] = {}
        self.enums: dict[tuple[str, ...], type[enum.Enum]] = {}
        self.enum_names: set[str] = set()
        self.tops: set[type] = set()
        """The command's input and result structs (their fields' enums need no infix)."""

    # --- inputs ---------------------------------------------------------------------

    def input_struct(self, info: mi.StructType, name: str | None = None) -> _Mapped:
        if (found := self.inputs.get(info.cls)) is not None:
            return found
        if info.array_like or info.tag_field is not None or not info.fields:
            return _JSON
        if any(not _graphql_name(f.encode_name) for f in info.fields):
            return _JSON
        cls = type(name or f"{self.prefix}{info.cls.__name__}Input", (), {"__module__": __name__})
        fields: list[tuple[str, str, Convert]] = []

        def convert(value: Any) -> Any:
            found: dict[str, Any] = {}
            for python, graphql, item in fields:
                given = getattr(value, python)
                if given is not strawberry.UNSET:
                    found[graphql] = None if given is None else item(given)
            return found

        mapped = self.inputs[info.cls] = _Mapped(cls, convert)
        taken: set[str] = set()
        required: dict[str, Any] = {}
        optional: dict[str, Any] = {}
        for item in info.fields:
            python = _python_name(item.encode_name, taken)
            value = self.input_type(item.type, self._hint(info, item))
            fields.append((python, item.encode_name, value.convert))
            if item.required and not _nullable(item.type):
                required[python] = value.annotation
                setattr(cls, python, strawberry.field(name=item.encode_name))
            else:
                optional[python] = maybe_type(value.annotation)
                setattr(
                    cls, python, strawberry.field(name=item.encode_name, default=strawberry.UNSET)
                )
        cls.__annotations__ = {**required, **optional}
        strawberry.input(cls, description=_doc(info.cls))
        return mapped

    def input_type(self, info: mi.Type, hint: str) -> _Mapped:
        info = _unwrapped(info)
        if isinstance(info, mi.UnionType):
            others = [t for t in info.types if not isinstance(t, mi.NoneType)]
            return self.input_type(others[0], hint) if len(others) == 1 else _JSON
        if isinstance(info, mi.StructType):
            return self.input_struct(info)
        if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            item = self.input_type(info.item_type, hint)
            return _Mapped(list_type(item.annotation), lambda v: [item.convert(x) for x in v])
        if (values := _strings(info)) is not None:
            return _Mapped(self.enum(values, hint), _enum_value)
        return _Mapped(_scalar(info)) if _scalar(info) is not None else _JSON

    # --- results --------------------------------------------------------------------

    def output_struct(self, info: mi.StructType, name: str | None = None) -> _Mapped:
        if (found := self.outputs.get(info.cls)) is not None:
            return found
        if info.array_like or info.tag_field is not None or not info.fields:
            return _JSON
        if any(not _graphql_name(f.encode_name) for f in info.fields):
            return _JSON
        cls = type(name or f"{self.prefix}{info.cls.__name__}", (), {"__module__": __name__})
        fields: list[tuple[str, str, Convert]] = []

        def convert(value: Any) -> Any:
            # Keyed by Python name: the schema's default resolver reads dict keys.
            return {
                python: None if value.get(json) is None else item(value[json])
                for python, json, item in fields
            }

        mapped = self.outputs[info.cls] = _Mapped(cls, convert)
        taken: set[str] = set()
        annotations: dict[str, Any] = {}
        for item in info.fields:
            python = _python_name(item.encode_name, taken)
            value = self.output_type(item.type, self._hint(info, item))
            fields.append((python, item.encode_name, value.convert))
            nullable = _nullable(item.type)
            annotations[python] = maybe_type(value.annotation) if nullable else value.annotation
            setattr(cls, python, strawberry.field(name=item.encode_name))
        cls.__annotations__ = annotations
        strawberry.type(cls, description=_doc(info.cls))
        return mapped

    def output_type(self, info: mi.Type, hint: str) -> _Mapped:
        info = _unwrapped(info)
        if isinstance(info, mi.UnionType):
            others = [t for t in info.types if not isinstance(t, mi.NoneType)]
            return self.output_type(others[0], hint) if len(others) == 1 else _JSON
        if isinstance(info, mi.StructType):
            return self.output_struct(info)
        if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            item = self.output_type(info.item_type, hint)
            return _Mapped(list_type(item.annotation), lambda v: [item.convert(x) for x in v])
        if (values := _strings(info)) is not None:
            return _Mapped(self.enum(values, hint))
        return _Mapped(_scalar(info)) if _scalar(info) is not None else _JSON

    def _hint(self, struct: mi.StructType, field: mi.Field) -> str:
        """A name for an enum of `field`: `DealCloseCommandOutcome` for the input's own
        fields, `DealCloseCommandLineKind` for a nested struct's."""
        owner = "" if struct.cls in self.tops else struct.cls.__name__
        words = re.split(r"[^0-9A-Za-z]+", field.encode_name)
        return self.prefix + owner + "".join(w[:1].upper() + w[1:] for w in words)

    def enum(self, values: tuple[str, ...], hint: str) -> type[enum.Enum]:
        """A str-based GraphQL enum of these values (one per distinct set of values)."""
        if (found := self.enums.get(values)) is None:
            members: dict[str, str] = {}
            for value in values:
                member = re.sub(r"\W", "_", value) or "_"
                if not _NAME.fullmatch(member) or member[0] == "_":
                    member = f"v_{member}"
                if member in ("true", "false", "null"):
                    member = member.upper()
                base, n = member, 2
                while member in members:
                    member, n = f"{base}_{n}", n + 1
                members[member] = value
            name, n = hint, 2
            while name in self.enum_names:
                name, n = f"{hint}{n}", n + 1
            self.enum_names.add(name)
            made = enum.Enum(name, members, type=str)  # type: ignore[misc]  # the functional API with a mixin type
            found = self.enums[values] = strawberry.enum(
                made, description=f"One of: {', '.join(values)}."
            )
        return found


def _unwrapped(info: mi.Type) -> mi.Type:
    while isinstance(info, mi.Metadata):
        info = info.type
    return info


def _nullable(info: mi.Type) -> bool:
    info = _unwrapped(info)
    return isinstance(info, mi.NoneType | mi.AnyType) or (
        isinstance(info, mi.UnionType) and any(isinstance(t, mi.NoneType) for t in info.types)
    )


def _strings(info: mi.Type) -> tuple[str, ...] | None:
    """The values of a string literal or a string enum."""
    if isinstance(info, mi.LiteralType) and all(isinstance(v, str) for v in info.values):
        return tuple(cast("tuple[str, ...]", info.values))
    if isinstance(info, mi.EnumType):
        values = tuple(member.value for member in info.cls)
        if all(isinstance(v, str) for v in values):
            return values
    return None


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


_SCALARS: dict[type[mi.Type], object] = {
    mi.IntType: scalars.BigInt,
    mi.FloatType: float,
    mi.StrType: str,
    mi.BoolType: bool,
    mi.DecimalType: scalars.Decimal,
    mi.DateTimeType: scalars.DateTime,
    mi.DateType: scalars.Date,
    mi.TimeType: str,
    mi.UUIDType: str,
}


def _scalar(info: mi.Type) -> object | None:
    return _SCALARS.get(type(info))


def _doc(cls: type) -> str | None:
    doc = cls.__dict__.get("__doc__")
    return doc.strip() if isinstance(doc, str) and doc.strip() else None
