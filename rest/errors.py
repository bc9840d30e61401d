"""The one mapping from errors to RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from resolvers.errors import (
    Conflict,
    Forbidden,
    GatewayError,
    Gone,
    Invalid,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)

__all__ = ["EXCEPTION_HANDLERS", "PROBLEM_JSON", "problem"]

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger("gateway.errors")

_STATUS: dict[type[GatewayError], int] = {
    Invalid: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Gone: 410,
    RateLimited: 429,
    Unavailable: 503,
}


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"https://jetstack.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _gateway_error(_request: Request[Any, Any, Any], exc: GatewayError) -> Response[dict[str, Any]]:
    status = next(code for cls, code in _STATUS.items() if isinstance(exc, cls))
    headers: dict[str, str] = {}
    errors: list[dict[str, str]] | None = None
    if isinstance(exc, Invalid):
        errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    elif isinstance(exc, Conflict) and exc.field:
        errors = [{"field": exc.field, "message": exc.detail}]
    if isinstance(exc, RateLimited | Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="jetstack-gateway"'
    return problem(status, exc.title, exc.detail, code=exc.code, errors=errors, headers=headers)


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [
            {"field": str(e.get("key") or e.get("source") or ""), "message": str(e.get("message"))}
            for e in exc.extra
            if isinstance(e, dict)
        ]
    code = "invalid" if isinstance(exc, ValidationException) else f"http-{exc.status_code}"
    title = "Invalid request" if isinstance(exc, ValidationException) else str(exc.detail)
    return problem(
        exc.status_code, title, str(exc.detail), code=code, errors=errors, headers=exc.headers
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    _log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "Internal error",
        "The gateway failed to process the request; it has been logged.",
        code="internal",
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
