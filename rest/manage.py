"""`/manage`: the Application Management screen, server-rendered HTML without script.

An operator signs in with an API key of a user holding `manageCache`. The key is kept
in a session cookie scoped to `/manage` and authenticated again on every request, so a
revoked key stops working at once. Every POST carries a double-submit CSRF token
derived from the cookie's key (the same on every worker, no server-side secret). The
figures and purges are `resolvers.cache_admin`'s, as `/api/v1/admin/cache` serves them;
this module only translates HTTP to those calls.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.response import Redirect

from resolvers import cache_admin
from resolvers.auth import authenticate
from resolvers.errors import Forbidden, Invalid, Unauthenticated
from resolvers.principal import Principal
from resolvers.services import CACHE_ERRORS, Services
from resolvers.storage import MAX_ID
from resolvers.tenant import Permission
from rest.manage_templates import (
    PurgeTarget,
    confirm_page,
    dashboard_page,
    refused_page,
    sign_in_page,
)

__all__ = ["COOKIE", "SECURITY_HEADERS", "ManageController", "csrf_token"]

COOKIE = "jgw_manage"
MAX_KEY = 200
"""Longer input is not a key: refused before any lookup."""
_MAX_TYPE = 100
_CSRF_CONTEXT = "jgw-manage-csrf:"
_DIGITS = re.compile(r"[0-9]{1,19}")

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def csrf_token(key: str) -> str:
    """The double-submit token for a signed-in key: a form must echo it back."""
    return hashlib.sha256(f"{_CSRF_CONTEXT}{key}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Operator:
    key: str
    principal: Principal

    @property
    def csrf(self) -> str:
        return csrf_token(self.key)


def _services(request: Request[Any, Any, Any]) -> Services:
    services: Services = request.app.state.services
    return services


def _html(body: str, status: int = 200, cookies: list[Cookie] | None = None) -> Response[str]:
    return Response(
        body,
        status_code=status,
        media_type=MediaType.HTML,
        headers=SECURITY_HEADERS,
        cookies=cookies,
    )


def _redirect(location: str, cookies: list[Cookie] | None = None) -> Response[Any]:
    return Redirect(location, status_code=303, headers=SECURITY_HEADERS, cookies=cookies)


def _cookie(request: Request[Any, Any, Any], value: str, *, forget: bool = False) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=value,
        path="/manage",
        httponly=True,
        samesite="strict",
        secure=request.scope["scheme"] == "https",
        max_age=0 if forget else None,
        expires=0 if forget else None,
    )


def _sign_in(
    request: Request[Any, Any, Any], error: str | None = None, status: int = 200
) -> Response[str]:
    """The sign-in page; after a refusal the cookie, if any, is cleared."""
    forget = [_cookie(request, "", forget=True)] if COOKIE in request.cookies else None
    tenant = _services(request).tenant.name
    return _html(sign_in_page(tenant=tenant, error=error), status, forget)


def _refused(request: Request[Any, Any, Any], reason: str) -> Response[str]:
    return _html(refused_page(tenant=_services(request).tenant.name, reason=reason), 403)


async def _operator(request: Request[Any, Any, Any]) -> _Operator | Response[str]:
    """The signed-in operator, re-authenticated now; else the sign-in page."""
    key = request.cookies.get(COOKIE)
    if not key:
        return _sign_in(request)
    try:
        principal = await authenticate(_services(request), key)
    except Unauthenticated as exc:
        return _sign_in(request, f"Your key no longer works ({exc.detail}).", 401)
    if not principal.has(Permission.MANAGE_CACHE):
        return _sign_in(request, "Your key's user no longer holds manageCache.", 403)
    return _Operator(key, principal)


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The posted fields, text only, first value of each."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


def _csrf_ok(request: Request[Any, Any, Any], form: dict[str, str]) -> bool:
    """The form echoes the token of the cookie's key: it came from our own page."""
    key = request.cookies.get(COOKIE, "")
    supplied = form.get("csrf", "")
    return bool(key) and hmac.compare_digest(csrf_token(key).encode(), supplied.encode())


def _refused_csrf(request: Request[Any, Any, Any]) -> Response[str]:
    return _refused(
        request,
        "This form was not sent from the current Application Management page. "
        "Reload the page and try again.",
    )


async def _dashboard(
    request: Request[Any, Any, Any],
    operator: _Operator,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response[str]:
    services = _services(request)
    stats = await cache_admin.cache_stats(services, operator.principal)
    body = dashboard_page(
        tenant=services.tenant.name,
        login=operator.principal.login,
        csrf=operator.csrf,
        stats=stats,
        type_names=[t.name for t in services.tenant.api_types()],
        notice=notice,
        error=error,
    )
    return _html(body, status)


def _purge_target(services: Services, form: dict[str, str]) -> PurgeTarget | str:
    """The purge the form asks for, or what is wrong with it."""
    scope = form.get("scope", "")
    if scope == "all":
        return PurgeTarget()
    if scope == "type":
        name = form.get("type", "").strip()
        if name in {t.name for t in services.tenant.api_types()} and len(name) <= _MAX_TYPE:
            return PurgeTarget(type_name=name)
        return "Choose one of the listed types." if not name else "There is no such type."
    if scope == "user":
        raw = form.get("user", "").strip()
        if _DIGITS.fullmatch(raw) and 1 <= int(raw) <= MAX_ID:
            return PurgeTarget(user_id=int(raw))
        return "A user id is a positive whole number."
    return "Choose what to purge."


def _purged_notice(raw: str | None) -> str | None:
    if raw is None or not _DIGITS.fullmatch(raw):
        return None
    count = int(raw)
    return f"Purged {count:,} {'entry' if count == 1 else 'entries'}."


class ManageController(Controller):
    """Sign in, see the response cache's figures, purge it; HTML, outside the API schema."""

    path = "/manage"
    include_in_schema = False

    @get("/")
    async def dashboard(self, request: Request[Any, Any, Any]) -> Response[str]:
        """The figures and the purge forms, or the sign-in page."""
        operator = await _operator(request)
        if isinstance(operator, Response):
            return operator
        notice = _purged_notice(request.query_params.get("purged"))
        return await _dashboard(request, operator, notice=notice)

    @post("/sign-in")
    async def sign_in(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Check the key (valid, holds manageCache) and keep it in the session cookie."""
        key = (await _form(request)).get("key", "").strip()
        if not key:
            return _sign_in(request, "Enter an API key.", 400)
        if len(key) > MAX_KEY:
            return _sign_in(request, "That is not an API key: it is far too long.", 400)
        try:
            principal = await authenticate(_services(request), key)
        except Unauthenticated as exc:
            return _sign_in(request, f"That key was refused ({exc.detail}).", 401)
        if not principal.has(Permission.MANAGE_CACHE):
            message = f"{principal.login} does not hold the manageCache permission."
            return _sign_in(request, message, 403)
        return _redirect("/manage", [_cookie(request, key)])

    @post("/sign-out")
    async def sign_out(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Forget the key in this browser (the key itself stays valid)."""
        if not _csrf_ok(request, await _form(request)):
            return _refused_csrf(request)
        return _redirect("/manage", [_cookie(request, "", forget=True)])

    @post("/purge")
    async def purge(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """First a confirmation page; with `confirm=1` the purge, then back to the figures."""
        form = await _form(request)
        if not _csrf_ok(request, form):
            return _refused_csrf(request)
        operator = await _operator(request)
        if isinstance(operator, Response):
            return operator
        services = _services(request)
        target = _purge_target(services, form)
        if isinstance(target, str):
            return await _dashboard(request, operator, error=target, status=422)
        if form.get("confirm") != "1":
            page = confirm_page(
                tenant=services.tenant.name,
                login=operator.principal.login,
                csrf=operator.csrf,
                target=target,
            )
            return _html(page)
        try:
            deleted = await cache_admin.purge_cache(
                services, operator.principal, type_name=target.type_name, user_id=target.user_id
            )
        except Invalid as exc:
            return await _dashboard(request, operator, error=exc.detail, status=422)
        except Forbidden:
            return _sign_in(request, "Your key's user no longer holds manageCache.", 403)
        except CACHE_ERRORS:
            error = (
                "Valkey is unreachable: nothing was purged. Reads are served from the "
                "database meanwhile; try again once it is back."
            )
            return await _dashboard(request, operator, error=error, status=503)
        return _redirect(f"/manage?purged={deleted}")
