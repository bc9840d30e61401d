"""Version 1 of the REST API, mounted at `/api/v1`."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide

from resolvers.blobs import DEFAULT_MAX_UPLOAD_BYTES
from resolvers.tenant import Tenant
from rest.v1.accounts import AccountsController
from rest.v1.admin import AdminController
from rest.v1.collections import collection_routers
from rest.v1.commands import command_router
from rest.v1.files import file_routers
from rest.v1.keys import KeysController, OthersKeysController
from rest.v1.security import private_responses, refuse_keys_in_query
from rest.v1.users import UsersController

__all__ = ["v1_router"]


def v1_router(
    tenant: Tenant,
    *,
    trusted_proxies: frozenset[str],
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> Router:
    return Router(
        path="/api/v1",
        route_handlers=[
            KeysController,
            AccountsController,
            OthersKeysController,
            UsersController,
            AdminController,
            *collection_routers(tenant),
            *file_routers(tenant, max_upload_bytes=max_upload_bytes),
            command_router(tenant),
        ],
        dependencies={
            "trusted_proxies": Provide(lambda: trusted_proxies, sync_to_thread=False),
        },
        before_request=refuse_keys_in_query,
        after_request=private_responses,
    )
