"""The one mapping from the gateway's errors to GraphQL errors, and the mask for the rest.

A `resolvers.errors.GatewayError` raised by a field becomes one GraphQL error whose
`message` is its detail and whose `extensions` carry `code` (the REST problem's code),
`errors` (the field errors of `Invalid`, or the property of a `Conflict`),
`challenge_id` (`DeliveryFailed`) and `retry_after` (`RateLimited`, `Unavailable`).
A database outage (`resolvers.outages`) is answered as `Unavailable`, as over REST.
Anything else a field raises is logged and masked as "Unexpected error."; GraphQL's own
errors (syntax, validation, variable coercion) pass unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.types import ExecutionContext

from resolvers.errors import (
    Conflict,
    DeliveryFailed,
    GatewayError,
    Invalid,
    RateLimited,
    Unavailable,
)
from resolvers.outages import as_unavailable, is_outage
from schema.context import GraphQLContext

__all__ = ["GatewayErrors", "GatewaySchema", "extensions_of", "masked_errors", "unexpected"]

_log = logging.getLogger("gateway.graphql")


def extensions_of(exc: GatewayError) -> dict[str, Any]:
    extensions: dict[str, Any] = {"code": exc.code}
    if isinstance(exc, Invalid) and exc.errors:
        extensions["errors"] = [{"field": e.field, "message": e.message} for e in exc.errors]
    elif isinstance(exc, Conflict) and exc.field:
        extensions["errors"] = [{"field": exc.field, "message": exc.detail}]
    if isinstance(exc, DeliveryFailed):
        extensions["challenge_id"] = exc.challenge_id
    if isinstance(exc, RateLimited | Unavailable):
        extensions["retry_after"] = exc.retry_after
    return extensions


def unexpected(error: GraphQLError) -> bool:
    """Raised by a field (it has a path) and not one of the gateway's own errors."""
    original = error.original_error
    return (
        original is not None
        and error.path is not None
        and not isinstance(original, GatewayError | GraphQLError)
        and not is_outage(original)
    )


def masked_errors() -> MaskErrors:
    return MaskErrors(should_mask_error=unexpected)


class GatewayErrors(SchemaExtension):
    """Rewrites the gateway's errors (message and extensions); notes failure in the context."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if not errors:
            return
        context = self.execution_context.context
        if isinstance(context, GraphQLContext):
            context.failed = True
        errors[:] = [_mapped(e) for e in errors]


def _mapped(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if original is not None and not isinstance(original, GatewayError):
        original = as_unavailable(original) or original
    if not isinstance(original, GatewayError):
        return error
    return GraphQLError(
        original.detail,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=original,
        extensions=extensions_of(original),
    )


class GatewaySchema(strawberry.Schema):
    """Logs only what it masks: a client's mistakes are answered, not logged as failures."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            if unexpected(error):
                _log.error(
                    "unexpected error in GraphQL field %s",
                    ".".join(map(str, error.path or ())),
                    exc_info=error.original_error,
                )
