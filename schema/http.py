"""`/graphql` on Litestar: authentication, the per-request context, and cache headers.

The same edge as REST's `/api/v1`: an API key from `Authorization: Bearer` or
`X-API-Key` (never the query string), checked by `resolvers.auth.authenticate` before any
operation runs, so a missing or bad key is REST's 401 problem+json. Responses are
private (`Vary: Authorization, X-API-Key`). A query over GET whose reads all came
through the response cache gets REST's treatment (`ETag` scoped to the caller, `304`
on `If-None-Match`, `Cache-Control: private, no-cache`); everything else is `no-store`.
`X-Cache` sums up the operation's reads: BYPASS if any bypassed, else MISS if any
missed, else HIT.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response
from litestar.di import NamedDependency
from strawberry.litestar import make_graphql_controller
from strawberry.litestar.controller import GraphQLController

from resolvers.auth import authenticate
from resolvers.cache import Cached, etag_for
from resolvers.services import Services
from resolvers.tenant import Tenant
from rest.caching import cached_response, wants_fresh
from rest.v1.security import (
    client_address,
    presented_key,
    private_responses,
    refuse_keys_in_query,
)
from schema.build import build_schema
from schema.context import GraphQLContext

__all__ = ["GRAPHQL_PATH", "create_graphql_controller"]

GRAPHQL_PATH = "/graphql"
_IDE_ACCEPT = ("text/html", "*/*")  # what strawberry's controller answers with GraphiQL


def create_graphql_controller(
    tenant: Tenant, *, graphiql: bool, trusted_proxies: frozenset[str] = frozenset()
) -> type[Controller]:
    """The `/graphql` controller for `tenant`; `graphiql` serves the IDE to browsers."""
    schema = build_schema(tenant)

    async def context_getter(
        request: Request[Any, Any, Any], services: NamedDependency[Services]
    ) -> GraphQLContext:
        principal = None
        if not (graphiql and _asks_for_ide(request)):
            principal = await authenticate(services, presented_key(request.scope["headers"]))
        return GraphQLContext(
            services=services,
            principal=principal,
            fresh=wants_fresh(request),
            client_address=client_address(request, trusted_proxies),
        )

    base = make_graphql_controller(
        schema,
        path=GRAPHQL_PATH,
        context_getter=context_getter,
        graphql_ide="graphiql" if graphiql else None,
        allow_queries_via_get=True,
    )

    async def execute_request(
        self: GraphQLController[Any, Any],
        request: Request[Any, Any, Any],
        context: Any,
        root_value: Any,
    ) -> Response[Any]:
        response = await base.execute_request(self, request, context, root_value)
        return _with_cache_headers(request, context, response)

    controller: type[Controller] = type(
        "GraphQL",
        (base,),
        {
            "execute_request": execute_request,
            "before_request": refuse_keys_in_query,
            "after_request": private_responses,
            "include_in_schema": False,  # /api/v1/openapi.json documents REST only
            "websocket_endpoint": None,  # no subscriptions: no WebSocket route
        },
    )
    return controller


def _asks_for_ide(request: Request[Any, Any, Any]) -> bool:
    """A browser opening `/graphql`: GraphiQL needs no key, its operations do."""
    if request.method != "GET" or "query" in request.query_params:
        return False
    accept = request.headers.get("accept", "")
    return any(kind in accept for kind in _IDE_ACCEPT)


def _with_cache_headers(
    request: Request[Any, Any, Any], context: object, response: Response[Any]
) -> Response[Any]:
    if not isinstance(context, GraphQLContext) or response.status_code != 200:
        return response
    status = context.cache_status()
    body = response.content
    if status is not None:
        response.headers["X-Cache"] = status
    cacheable = request.method == "GET" and not context.failed and isinstance(body, bytes)
    if cacheable and status is not None and context.principal is not None:
        cached = Cached(body=body, etag=etag_for(body, context.principal), status=status)
        return cached_response(request, cached)
    response.headers["Cache-Control"] = "no-store"
    return response
