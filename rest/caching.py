"""HTTP semantics of cached reads (DESIGN §7): ETag, 304, X-Cache, Cache-Control.

The body and its ETag come from `resolvers.reads`; this module only decides whether
the client asked for a fresh answer and whether it already has this one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.openapi import ResponseSpec

from resolvers.cache import Cached

__all__ = [
    "CACHED_HEADERS",
    "CACHE_CONTROL",
    "NOT_MODIFIED",
    "asks_no_cache",
    "cached_response",
    "etag_matches",
    "not_modified",
    "send_cached",
    "wants_fresh",
]

_JSON = "application/json"
# `private`: never stored by shared caches; `no-cache`: a browser or client-side cache
# keeps it but revalidates with If-None-Match first (a 304 costs almost nothing).
CACHE_CONTROL = "private, no-cache"
_CACHE_CONTROL = CACHE_CONTROL.encode()

CACHED_HEADERS = [
    # `value` only gives the documented header its (string) schema.
    ResponseHeader(
        name="ETag",
        value='"0123456789abcdef0123456789abcdef"',
        documentation_only=True,
        description="Scoped to the caller: the same body has a different ETag for another key.",
    ),
    ResponseHeader(
        name="X-Cache",
        value="HIT",
        documentation_only=True,
        description="HIT (from the response cache), MISS (computed and stored) or "
        "BYPASS (computed and not stored: no-cache, `_noCache=1`, audited reads, cache down).",
    ),
    ResponseHeader(
        name="Cache-Control",
        value=CACHE_CONTROL,
        documentation_only=True,
        description="Private to the caller; revalidate with If-None-Match.",
    ),
]
NOT_MODIFIED = {
    304: ResponseSpec(
        data_container=None,
        description="Not modified: the `If-None-Match` ETag is the current one (empty body).",
    )
}


def wants_fresh(request: Request[Any, Any, Any], no_cache: int = 0) -> bool:
    """`Cache-Control: no-cache` (or `Pragma: no-cache`), or `_noCache=1`."""
    return bool(no_cache) or asks_no_cache(request.scope["headers"])


def asks_no_cache(raw_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """`Cache-Control: no-cache` or `Pragma: no-cache` among the ASGI scope's headers."""
    return any(
        name in {b"cache-control", b"pragma"} and _has_directive(value, b"no-cache")
        for name, value in raw_headers
    )


def not_modified(request: Request[Any, Any, Any], etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, as RFC 9110 §13.1.2 says)."""
    for name, value in request.scope["headers"]:
        if name == b"if-none-match":
            return etag_matches(value.decode("latin-1"), etag)
    return False


def cached_response(request: Request[Any, Any, Any], cached: Cached) -> Response[bytes]:
    """The body as JSON, or an empty 304 when the client already holds this ETag."""
    headers = {"ETag": cached.etag, "X-Cache": cached.status, "Cache-Control": CACHE_CONTROL}
    if not_modified(request, cached.etag):
        return Response(content=b"", status_code=304, headers=headers)
    return Response(content=cached.body, media_type=_JSON, headers=headers)


async def send_cached(
    raw_headers: Iterable[tuple[bytes, bytes]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
    cached: Cached,
    vary: bytes,
) -> None:
    """`cached_response` sent as raw ASGI messages, for answers made at the edge: the
    same status and headers as Litestar sends for it (with `vary`, as the API routes'
    after-request hook adds it)."""
    etag = cached.etag.encode()
    headers = [
        (b"etag", etag),
        (b"x-cache", cached.status.encode()),
        (b"cache-control", _CACHE_CONTROL),
        (b"vary", vary),
    ]
    for name, value in raw_headers:
        if name == b"if-none-match" and (
            value == etag  # what a client sends back: the ETag it was given
            or etag_matches(value.decode("latin-1"), cached.etag)
        ):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(cached.body)),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": cached.body})


def _has_directive(value: bytes, directive: bytes) -> bool:
    return any(part.strip().split(b"=", 1)[0].lower() == directive for part in value.split(b","))


def etag_matches(header: str, etag: str) -> bool:
    """Whether an `If-None-Match` value names `etag` (weak comparison)."""
    if header.strip() == "*":
        return True
    return _opaque(etag) in {_opaque(tag) for tag in _tags(header)}


def _tags(header: str) -> Iterable[str]:
    return (tag.strip() for tag in header.split(",") if tag.strip())


def _opaque(tag: str) -> str:
    return tag.removeprefix("W/")
