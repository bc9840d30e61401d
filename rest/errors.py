"""The one mapping from errors to RFC 9457 problem+json responses.

Litestar's exception handlers (`EXCEPTION_HANDLERS`) answer with it, and so does the ASGI
edge (`rest.hot_reads`), which answers a resolver's error before any routing:
`encoded_problem` gives it the very bytes Litestar would send.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any, NamedTuple

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import SQLAlchemyError

from resolvers.errors import (
    Conflict,
    DeliveryFailed,
    Forbidden,
    GatewayError,
    Gone,
    Invalid,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnsupportedType,
)
from resolvers.outages import as_unavailable

__all__ = [
    "EXCEPTION_HANDLERS",
    "PROBLEM_JSON",
    "PROBLEM_STATUSES",
    "EncodedProblem",
    "encoded_problem",
    "gateway_problem",
    "problem",
]

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger("gateway.errors")
_PHRASES = frozenset(s.value for s in HTTPStatus)
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]{1,100})`")

_STATUS: dict[type[GatewayError], int] = {
    Invalid: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    RateLimited: 429,
    TooLarge: 413,
    UnsupportedType: 415,
    Unavailable: 503,
    DeliveryFailed: 502,
}

PROBLEM_STATUSES = tuple(sorted({400, *_STATUS.values()}))
"""Every status this mapping answers with a problem, short of a 500."""


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"https://jetstack.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        **(extensions or {}),
    }
    if errors is not None:
        body["errors"] = errors
    # An error may answer a keyed request: never let a shared cache keep it.
    private = {"Cache-Control": "no-store", "Vary": "Authorization, X-API-Key"}
    return Response(
        body, status_code=status, media_type=PROBLEM_JSON, headers={**private, **(headers or {})}
    )


def gateway_problem(exc: GatewayError) -> Response[dict[str, Any]]:
    """The problem answering a resolver's error, with the headers its kind calls for."""
    status = next(code for cls, code in _STATUS.items() if isinstance(exc, cls))
    headers: dict[str, str] = {}
    errors: list[dict[str, str]] | None = None
    if isinstance(exc, Invalid):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    elif isinstance(exc, Conflict | UnsupportedType) and exc.field:
        errors = [{"field": exc.field, "message": exc.detail}]
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="jetstack-gateway"'
    extensions = {"challenge_id": exc.challenge_id} if isinstance(exc, DeliveryFailed) else None
    return problem(
        status,
        exc.title,
        exc.detail,
        code=exc.code,
        errors=errors,
        headers=headers,
        extensions=extensions,
    )


class EncodedProblem(NamedTuple):
    """A problem response as ASGI messages carry it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def encoded_problem(exc: GatewayError) -> EncodedProblem:
    """`gateway_problem(exc)` encoded as Litestar's exception middleware encodes it (see
    `Response.to_asgi_response`), for an answer in plain ASGI outside Litestar."""
    response = gateway_problem(exc)
    encoded = ASGIResponse(
        body=response.render(response.content, PROBLEM_JSON),
        headers=response.headers,
        media_type=PROBLEM_JSON,
        status_code=response.status_code,
    )
    return EncodedProblem(encoded.status_code, encoded.encode_headers(), encoded.body)


def _gateway_error(_request: Request[Any, Any, Any], exc: GatewayError) -> Response[dict[str, Any]]:
    return gateway_problem(exc)


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationException):
        return _validation_error(exc)
    status = exc.status_code
    title = HTTPStatus(status).phrase if status in _PHRASES else "Error"
    return problem(status, title, str(exc.detail), code=f"http-{status}", headers=exc.headers)


def _validation_error(exc: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's decoding errors: bad content in a well-formed body or in a query
    parameter (`_limit=5000`) is 422, like ours; anything else is 400."""
    items = [e for e in exc.extra if isinstance(e, dict)] if isinstance(exc.extra, list) else []
    if any(item.get("key") == "data" and item.get("message") == "'data'" for item in items):
        # Litestar's KeyError for a handler's missing `data`: no body was sent at all.
        errors = [{"field": "body", "message": "a JSON body is required"}]
        return problem(
            400, "Invalid request", "a JSON body is required", code="invalid", errors=errors
        )
    errors = []
    for item in items:
        message = str(item.get("message", ""))
        unknown = _UNKNOWN_FIELD.search(message)
        key = str(item.get("key") or "")
        field = unknown.group(1) if unknown else ("body" if key == "data" else key)
        errors.append({"field": field, "message": "unknown field" if unknown else message})
    sources = {str(getattr(item.get("source"), "value", item.get("source"))) for item in items}
    semantic = bool(items) and sources <= {"body", "query"}
    status = 422 if semantic else 400
    title = "Invalid input" if semantic else "Invalid request"
    return problem(status, title, str(exc.detail), code="invalid", errors=errors)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    _log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal error",
        "The gateway failed to process the request; it has been logged.",
        code="internal",
    )


def _outage_or_unexpected(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    """Database errors (and the socket errors of opening a connection): 503 for an outage."""
    unavailable = as_unavailable(exc)
    if unavailable is None:
        return _unexpected(request, exc)
    # One line per request caught in an outage, without a traceback: it is not a bug.
    _log.warning(
        "database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return gateway_problem(unavailable)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    SQLAlchemyError: _outage_or_unexpected,
    OSError: _outage_or_unexpected,
    Exception: _unexpected,
}
