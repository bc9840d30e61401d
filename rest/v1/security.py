"""Authentication at the HTTP edge: where a key may come from, and who the client is.

A request that presents a key has it checked once, at the ASGI edge, before Litestar
routes it (`check_presented_key`); the verdict waits in the scope for whoever asks
(`principal_of`; routes call `caller`). Checked there, the key's Valkey read
suspends a request a few frames deep instead of inside Litestar's dependency
injection, which costs as much as the check itself.

The hooks are coroutines on purpose: Litestar runs synchronous hooks in a thread pool,
which costs more than everything they do.

The decision itself (is this key valid, for whom, with what rights) is made by
`resolvers.auth.authenticate`, shared with GraphQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

from litestar import Request, Response
from litestar.exceptions import ClientException

from resolvers.auth import authenticate
from resolvers.errors import GatewayError
from resolvers.principal import Principal
from resolvers.services import Services
from rest.observability import note_user

__all__ = [
    "KEY_PARAMETERS",
    "VARY",
    "caller",
    "check_presented_key",
    "client_address",
    "presented_key",
    "principal_of",
    "private_responses",
    "refuse_keys_in_query",
    "routed",
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


_VERDICT = "jgw.principal"
"""The scope entry holding the edge's verdict on the presented key."""


async def check_presented_key(
    services: Services, scope: MutableMapping[str, Any]
) -> Principal | GatewayError | None:
    """The verdict on the key `scope`'s request presents: its principal, or why it is
    refused; None without a key, or if it could not be checked (an outage: the routed
    request meets it again, and Litestar's handlers answer it). Checked once per
    request: the verdict stays in the scope for `principal_of`."""
    if _VERDICT in scope:
        return scope[_VERDICT]  # type: ignore[no-any-return]  # our own entry
    key = presented_key(scope["headers"])
    if key is None:
        return None
    try:
        verdict: Principal | GatewayError = await authenticate(services, key)
    except GatewayError as exc:
        verdict = exc
    except Exception:  # noqa: BLE001 - left for the routed request, see above
        return None
    scope[_VERDICT] = verdict
    return verdict


async def principal_of(scope: Mapping[str, Any], services: Services) -> Principal:
    """The client of the request of `scope`: the edge's verdict on its key, else checked
    now (no verdict: no key, an outage, or a request the edge did not see)."""
    verdict: Principal | GatewayError | None = scope.get(_VERDICT)
    if verdict is None:
        verdict = await authenticate(services, presented_key(scope["headers"]))
    elif isinstance(verdict, GatewayError):
        raise verdict
    note_user(verdict.user_id)
    return verdict


_ROUTED: ContextVar[MutableMapping[str, Any] | None] = ContextVar("jgw.routed", default=None)
"""The scope of the request Litestar is routing in this context (`routed`)."""


async def routed(
    app: Callable[[Any, Any, Any], Awaitable[None]], scope: Any, receive: Any, send: Any
) -> None:
    """Route the request of `scope` through `app` (Litestar) as the one `caller` answers
    for. Set and reset in one frame around each request, so that no request, nor the
    next one served in the same task, can see another's. (A plain frame: a
    `contextmanager` would cost more than the rest of `caller`.)"""
    token = _ROUTED.set(scope)
    try:
        await app(scope, receive, send)
    finally:
        _ROUTED.reset(token)


async def caller() -> Principal:
    """The client of the request being routed (401 without a valid key).

    Routes ask for it rather than having it injected: a Litestar dependency, or any
    parameter at all, costs more than the key check itself (`bench/auth_overhead`), and
    `services` with a second dependency were resolved in a task group on every request.
    """
    scope = _ROUTED.get()
    if scope is None:
        raise RuntimeError("caller() outside a request routed by the gateway's edge")
    return await principal_of(scope, scope["app"].state.services)


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
