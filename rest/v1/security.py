"""Authentication at the HTTP edge: where a key may come from, and who the client is.

The hooks are coroutines on purpose: Litestar runs synchronous hooks in a thread pool,
which costs more than everything they do.

The decision itself (is this key valid, for whom, with what rights) is made by
`resolvers.auth.authenticate`, shared with GraphQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.exceptions import ClientException

from resolvers.auth import authenticate
from resolvers.principal import Principal
from resolvers.services import Services
from rest.observability import note_user

__all__ = [
    "KEY_PARAMETERS",
    "VARY",
    "client_address",
    "presented_key",
    "private_responses",
    "provide_principal",
    "refuse_keys_in_query",
]

KEY_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "access_token", "key"})
"""Query parameter names refused outright (with any value starting `jgw_`)."""
VARY = "Authorization, X-API-Key"
"""The `Vary` of every API response: each is per key."""


def presented_key(raw_headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from `Authorization: Bearer <key>`, else from `X-API-Key`.

    Reads the ASGI scope's raw header pairs: building a header mapping per request
    costs more than the whole search.
    """
    api_key = None
    for name, value in raw_headers:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip() or None
    return api_key


async def provide_principal(
    request: Request[Any, Any, Any], services: NamedDependency[Services]
) -> Principal:
    # Depending on `services` puts the two in sequence: Litestar resolves dependencies
    # of one level concurrently, in a task group that costs more than the key check.
    principal = await authenticate(services, presented_key(request.scope["headers"]))
    note_user(principal.user_id)
    return principal


async def refuse_keys_in_query(request: Request[Any, Any, Any]) -> None:
    """Keys in URLs leak into logs and histories: refuse them outright (400)."""
    for name, value in request.query_params.items():
        if name.lower() in KEY_PARAMETERS or str(value).startswith("jgw_"):
            raise ClientException(
                "API keys are not accepted in the query string; "
                "send `Authorization: Bearer <key>` or `X-API-Key`."
            )


def client_address(request: Request[Any, Any, Any], trusted_proxies: frozenset[str]) -> str:
    """The peer address, or the nearest untrusted X-Forwarded-For hop behind trusted proxies."""
    peer = request.client.host if request.client else "unknown"
    if peer not in trusted_proxies:
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted_proxies:
            return hop
    return peer


async def private_responses(response: Response[Any]) -> Response[Any]:
    """Responses to API requests are per key: never stored by shared caches."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Vary"] = VARY
    return response
