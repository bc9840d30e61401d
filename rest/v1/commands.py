"""`/api/v1/commands`: the tenant's commands (`resolvers.commands`) over REST.

- `GET /commands` lists the commands the caller may run, with their JSON Schemas;
- `POST /commands/{name}` runs one with a JSON body and answers its JSON result (404
  unknown, 403 without what it needs, 422 bad input).

Each command has its own route, so OpenAPI documents its input and result schemas
(converted from the msgspec schemas the resolvers validate with); a hidden catch-all
route answers unknown names with a 404 problem.
"""

# No `from __future__ import annotations` here: the handlers' annotations must be real
# objects, since `_annotate` rewrites them for Litestar at runtime.
import dataclasses
from collections.abc import Callable, Mapping
from typing import Annotated, Any, cast

import msgspec
from litestar import Response, Router, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Discriminator, OpenAPIFormat, OpenAPIType, Schema
from litestar.params import JSONBody, PathParameter, SkipValidation

from resolvers import commands
from resolvers.services import Services
from resolvers.tenant import Tenant
from rest.openapi import Ref, documented, problems
from rest.v1.security import caller

__all__ = ["command_router"]

_JSON = "application/json"
_RUN_PROBLEMS = problems(400, 401, 403, 404, 409, 422)
_LIST_PROBLEMS = problems(401, 403)
_FORMATS = {f.value: f for f in OpenAPIFormat}
# JSON Schema keywords msgspec writes, and the attribute of Litestar's `Schema` for each.
_PLAIN = {
    "title": "title",
    "description": "description",
    "enum": "enum",
    "const": "const",
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "multipleOf": "multiple_of",
    "minLength": "min_length",
    "maxLength": "max_length",
    "pattern": "pattern",
    "minItems": "min_items",
    "maxItems": "max_items",
    "uniqueItems": "unique_items",
    "minProperties": "min_properties",
    "maxProperties": "max_properties",
    "required": "required",
    "default": "default",
    "examples": "examples",
    "contentEncoding": "content_encoding",
}
_NESTED = {"items": "items", "additionalProperties": "additional_properties"}
_LISTS = {"anyOf": "any_of", "oneOf": "one_of", "allOf": "all_of", "prefixItems": "prefix_items"}


# --- JSON Schema → OpenAPI ------------------------------------------------------------


def _converted(document: Mapping[str, Any]) -> Schema:
    """msgspec's JSON Schema (a `$ref` into `$defs`) as one self-contained `Schema`."""
    definitions: Mapping[str, Any] = document.get("$defs", {})
    return _node(document, definitions, ())


def _node(node: Mapping[str, Any], definitions: Mapping[str, Any], seen: tuple[str, ...]) -> Schema:
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in definitions:
            # A recursive struct: below its first level, any JSON value is documented.
            return Schema(description=f"A {name} (recursive).")
        return _node(definitions[name], definitions, (*seen, name))
    schema = Schema()
    for key, value in node.items():
        if key in _PLAIN:
            setattr(schema, _PLAIN[key], value)
        elif key == "type":
            schema.type = (
                [OpenAPIType(t) for t in value] if isinstance(value, list) else OpenAPIType(value)
            )
        elif key == "format":
            # OpenAPI allows any format; Litestar's type lists the registered ones.
            schema.format = _FORMATS.get(value, cast("OpenAPIFormat", value))
        elif key == "properties":
            schema.properties = {k: _node(v, definitions, seen) for k, v in value.items()}
        elif key in _NESTED:
            converted = value if isinstance(value, bool) else _node(value, definitions, seen)
            setattr(schema, _NESTED[key], converted)
        elif key in _LISTS:
            setattr(schema, _LISTS[key], [_node(v, definitions, seen) for v in value])
        elif key == "discriminator":
            # Its mapping points into `$defs`, which are inlined here: keep the property.
            schema.discriminator = Discriminator(property_name=value["propertyName"])
    return schema


def _model(name: str, document: Mapping[str, Any]) -> type:
    """A documentation-only type whose component is `name`."""
    converted = _converted(document)

    def build(_ref: Ref) -> Schema:
        return dataclasses.replace(converted)

    return type(name, (), {**documented(build), "__module__": __name__})


def _listing_schema(_ref: Ref) -> Schema:
    entry = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "name": Schema(type=OpenAPIType.STRING),
            "description": Schema(type=OpenAPIType.STRING),
            "needs": Schema(
                type=OpenAPIType.ARRAY,
                items=Schema(type=OpenAPIType.STRING),
                description="Permissions (`manageUsers`) and rights on types (`Deal.update`).",
            ),
            "graphql": Schema(type=OpenAPIType.STRING, description="The GraphQL mutation."),
            "input": Schema(
                type=OpenAPIType.OBJECT, description="JSON Schema of the input (with `$defs`)."
            ),
            "result": Schema(
                type=OpenAPIType.OBJECT, description="JSON Schema of the result (with `$defs`)."
            ),
        },
        required=["name", "description", "needs", "graphql", "input", "result"],
        additional_properties=False,
    )
    return Schema(
        type=OpenAPIType.OBJECT,
        properties={"data": Schema(type=OpenAPIType.ARRAY, items=entry)},
        required=["data"],
        additional_properties=False,
        description="The commands the caller may run, by name.",
    )


class CommandList:
    __jgw_openapi__ = staticmethod(_listing_schema)


# --- routes ---------------------------------------------------------------------------


def _pascal(field_name: str) -> str:
    return field_name[:1].upper() + field_name[1:]


def _result_response(result: msgspec.Struct) -> Response[bytes]:
    return Response(content=commands.encode_result(result), media_type=_JSON, status_code=200)


def command_router(tenant: Tenant) -> Router:
    """`/commands`: the listing, one documented route per command, and a 404 for others."""
    registry = commands.load_commands(tenant)

    async def listing(services: Services) -> Response[bytes]:
        """The commands you may run, with the JSON Schemas of their input and result."""
        principal = await caller()
        runnable = services.commands.runnable(principal)
        body = {
            "data": [
                {
                    "name": c.name,
                    "description": c.description,
                    "needs": [str(n) for n in c.needs],
                    "graphql": c.field_name,
                    "input": c.input_schema,
                    "result": c.result_schema,
                }
                for c in runnable
            ]
        }
        return Response(content=msgspec.json.encode(body), media_type=_JSON)

    async def unknown(name: str, services: Services, data: Any = None) -> Response[bytes]:
        principal = await caller()
        return _result_response(await commands.run_command(services, principal, name, data))

    _annotate(listing, CommandList)
    _annotate(unknown, None, body=Any)
    handlers: list[Any] = [
        get(
            "/",
            name="listCommands",
            summary="List the commands you may run",
            responses=_LIST_PROBLEMS,
        )(listing),
        post("/{name:str}", include_in_schema=False, status_code=200)(unknown),
    ]
    handlers += [_route(c) for c in registry]
    return Router(path="/commands", tags=["Commands"], route_handlers=handlers)


def _route(command: commands.Command) -> Any:
    name = command.name
    pascal = _pascal(command.field_name)

    async def run(services: Services, data: Any = None) -> Response[bytes]:
        principal = await caller()
        return _result_response(await commands.run_command(services, principal, name, data))

    _annotate(
        run,
        _model(f"{pascal}Result", command.result_schema),
        body=_model(f"{pascal}Input", command.input_schema),
    )
    needs = ", ".join(str(n) for n in command.needs)
    return post(
        f"/{name}",
        name=f"command{pascal}",
        summary=command.description.splitlines()[0],
        description=f"{command.description}\n\nNeeds: {needs}. Runs in one transaction.",
        status_code=200,
        responses=_RUN_PROBLEMS,
    )(run)


def _annotate(handler: Callable[..., Any], returned: type | None, *, body: Any = None) -> None:
    """Give a closure the runtime annotations Litestar reads for validation and OpenAPI."""
    annotations = dict(handler.__annotations__)
    for key, value in list(annotations.items()):
        if value is Services:
            annotations[key] = NamedDependency[Services]
        elif key == "name":
            annotations[key] = Annotated[str, PathParameter(description="A command's name.")]
        elif key == "data":
            # Decoded JSON, unconverted: `resolvers.commands` converts it strictly (422).
            annotations[key] = _subscript(JSONBody, _subscript(SkipValidation, body))
    annotations["return"] = returned
    handler.__annotations__ = annotations


def _subscript(generic: Any, argument: Any) -> Any:
    """`generic[argument]` for a type built at runtime (a static checker cannot follow it)."""
    return generic[argument]
