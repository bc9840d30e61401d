"""OpenAPI at the contract's paths: `/api/v1/openapi.json` and `/api/v1/docs`.

Litestar's OpenAPI router answers unknown paths below its own with an HTML page;
mounted at the JSON document's own path, that catch-all stays out of `/api/v1`.

`ApiDocumentation` (installed by `rest.edge.GatewayApp`) makes the document say what
the API does rather than what Litestar infers:

- a type may declare its own schema (`documented`): the per-tenant models are built
  from the tenant file, with the exact shapes `resolvers.values` reads and renders;
- every `/api/v1` operation documents its errors as RFC 9457 problem details, the way
  `rest.errors` answers them (a handler may declare its own subset with `problems`);
- operations that take a key say so (`security`), the others do not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIType,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.plugins import OpenAPISchemaPlugin, ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.typing import FieldDefinition

from rest.errors import PROBLEM_JSON, PROBLEM_STATUSES

__all__ = [
    "OPENAPI_PATH",
    "ApiDocumentation",
    "Ref",
    "SchemaBuilder",
    "docs",
    "documented",
    "openapi_config",
    "problems",
]

OPENAPI_PATH = "/api/v1/openapi.json"
_API_PREFIX = "/api/v1/"
_DECLARED = "__jgw_openapi__"

Ref = Callable[[Any], Schema | Reference]
"""Gives the schema (a `$ref` for a component) of another type."""
SchemaBuilder = Callable[[Ref], Schema]

SECURITY_SCHEMES = {
    "bearerKey": SecurityScheme(
        type="http",
        scheme="bearer",
        description="An API key: `Authorization: Bearer jgw_<public id>_<secret>`.",
    ),
    "apiKeyHeader": SecurityScheme(
        type="apiKey",
        name="X-API-Key",
        security_scheme_in="header",
        description="The same key in the `X-API-Key` header. Keys in a query string are refused.",
    ),
}
_KEYED: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]

_PROBLEM_DESCRIPTIONS = {
    400: "The request is malformed (bad JSON, a parameter of the wrong type, a key in the URL).",
    401: "No valid key: missing, unknown, revoked or expired, or its user may not use the API.",
    403: "The key's user lacks the right this needs.",
    404: "No such resource, or not one the caller may see.",
    409: "The change conflicts with existing data (a unique value, a record still referenced).",
    410: "The resource existed but is gone.",
    413: "The upload is larger than `GATEWAY_MAX_UPLOAD_BYTES`.",
    415: "The file's content type is not one the property accepts.",
    416: "No byte of the requested range exists; `Content-Range` gives the size.",
    422: "The content is not valid; `errors` lists every field that is wrong.",
    429: "Too many attempts; `Retry-After` says when to try again.",
    502: "A message could not be delivered; `challenge_id` names the challenge to retry.",
    503: "Temporarily unavailable; `Retry-After` says when to try again.",
}


def _problem_schema(_ref: Ref) -> Schema:
    field_error = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "field": Schema(type=OpenAPIType.STRING, description="The field, parameter or path."),
            "message": Schema(type=OpenAPIType.STRING),
        },
        required=["field", "message"],
        additional_properties=False,
    )
    return Schema(
        type=OpenAPIType.OBJECT,
        description="RFC 9457 problem details.",
        properties={
            "type": Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.URI),
            "title": Schema(type=OpenAPIType.STRING),
            "status": Schema(type=OpenAPIType.INTEGER, minimum=400, maximum=599),
            "detail": Schema(type=OpenAPIType.STRING),
            "errors": Schema(
                type=OpenAPIType.ARRAY,
                items=field_error,
                description="For invalid input and conflicts: what is wrong, field by field.",
            ),
            "challenge_id": Schema(
                type=OpenAPIType.STRING,
                description="For a failed delivery (502): the challenge to retry.",
            ),
        },
        required=["type", "title", "status", "detail"],
        additional_properties=False,
    )


class Problem:
    """The body of every error answer under `/api/v1` (see `rest.errors.problem`)."""

    __jgw_openapi__ = staticmethod(_problem_schema)


def documented(build: SchemaBuilder) -> dict[str, Any]:
    """A class namespace entry that makes a type document itself as `build(ref)`."""
    return {_DECLARED: staticmethod(build)}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """Documented problem+json responses for these statuses (a handler's `responses`)."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            generate_examples=False,
            description=_PROBLEM_DESCRIPTIONS[status],
            media_type=PROBLEM_JSON,
        )
        for status in statuses
    }


class ApiDocumentation(OpenAPISchemaPlugin, ReceiveRoutePlugin):
    """Self-documenting types, problem responses and security for `/api/v1` operations."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return callable(getattr(value, _DECLARED, None))

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        build: SchemaBuilder = getattr(field_definition.annotation, _DECLARED)

        def ref(annotation: Any) -> Schema | Reference:
            found: Schema | Reference = schema_creator.for_field_definition(
                FieldDefinition.from_annotation(annotation)
            )
            return found

        declared = build(ref)
        # The registry's own object: what Litestar turns into a component and `$ref`s.
        schema: Schema = schema_creator.schema_registry.get_schema_for_field_definition(
            field_definition
        )
        for item in dataclasses.fields(declared):
            setattr(schema, item.name, getattr(declared, item.name))
        schema.title = schema.title or field_definition.annotation.__name__
        return schema

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute) or not route.path.startswith(_API_PREFIX):
            return
        for handler in route.route_handlers:
            _document_handler(handler)


def _document_handler(handler: HTTPRouteHandler) -> None:
    declared: Mapping[int, ResponseSpec] = handler.responses or {}
    if not any(spec.media_type == PROBLEM_JSON for spec in declared.values()):
        # Nothing said: every status the error mapping can answer.
        declared = {**problems(*PROBLEM_STATUSES), **declared}
    handler.responses = declared
    if handler.security is None:  # the anonymous few say `security=[]`
        handler.security = _KEYED


def openapi_config(title: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version="1",
        path=OPENAPI_PATH,
        render_plugins=[JsonRenderPlugin(path="/")],
        components=Components(security_schemes=dict(SECURITY_SCHEMES)),
        use_handler_docstrings=True,
    )


class _Scalar(ScalarRenderPlugin):
    @staticmethod
    def get_openapi_json_route(_request: Request[Any, Any, Any]) -> str:
        return OPENAPI_PATH


_SCALAR = _Scalar()


@get("/api/v1/docs", include_in_schema=False, media_type="text/html", sync_to_thread=False)
def docs(request: Request[Any, Any, Any]) -> bytes:
    """The interactive API reference, rendered from the same document."""
    schema = request.app.openapi_schema.to_schema()
    return _SCALAR.render(request, schema)
