"""The real gateway app plus two benchmark-only routes, for ``bench/auth_overhead/run.py``.

``GET /bench/whoami`` is guarded by the real key check (``caller``, as every route of
``/api/v1`` is) and answers ``{"user": <login>}``; ``GET /bench/anon`` is its twin
without it and answers ``{"user": null}``. ``GET /bench/anon-dep`` has a dependency that
checks nothing, ``GET /bench/anon-request`` takes the request as whoami does (and reads
nothing from it), and ``GET /bench/whoami-dep`` gets the principal as a Litestar dependency,
as ``/api/v1`` did before (``bench/auth_overhead/alternate.py`` uses both to tell
Litestar's dependency injection from the key check). All sit in one router with the same
before/after-request hooks as ``/api/v1``. Not part of the product.

Serve with ``granian --interface asgi --factory app:create_bench_app`` (settings from
``GATEWAY_*`` variables).
"""

from __future__ import annotations

import os
from typing import Any

from litestar import Litestar, Request, Router, get
from litestar.di import Provide

from gateway.app import create_app
from gateway.runtime import configure_logging
from gateway.settings import Settings
from resolvers.principal import Principal
from rest.v1.security import caller, private_responses, refuse_keys_in_query

__all__ = ["bench_router", "build", "create_bench_app"]


@get("/whoami")
async def whoami() -> dict[str, str | None]:
    principal = await caller()
    return {"user": principal.login}


@get("/whoami-dep", dependencies={"principal": Provide(caller)})
async def whoami_dep(principal: Principal) -> dict[str, str | None]:
    return {"user": principal.login}


@get("/anon")
async def anon() -> dict[str, str | None]:
    return {"user": None}


@get("/anon-request")
async def anon_request(request: Request[Any, Any, Any]) -> dict[str, str | None]:
    return {"user": None if request.method == "GET" else "?"}  # read, as a route would


async def _nobody() -> None:
    return None


@get("/anon-dep", dependencies={"principal": Provide(_nobody)})
async def anon_dep(principal: None) -> dict[str, str | None]:
    return {"user": principal}


def bench_router() -> Router:
    return Router(
        path="/bench",
        route_handlers=[whoami, whoami_dep, anon, anon_request, anon_dep],
        before_request=refuse_keys_in_query,
        after_request=private_responses,
        include_in_schema=False,
    )


def build(settings: Settings) -> Litestar:
    """The app `create_app(settings)` builds, with the two benchmark routes registered."""
    app = create_app(settings, freeze_gc=True)  # as `gateway serve` builds it
    app.register(bench_router())
    return app


def create_bench_app() -> Litestar:
    """Factory for granian: settings (and logging) from the environment, like
    `gateway.asgi:app_from_env`."""
    settings = Settings.from_env(os.environ)
    app = build(settings)
    configure_logging(settings)  # after the app, which sets up logging of its own
    return app
