"""`/api/v1/auth/keys` and `/api/v1/users/{id}/keys`: issue, validate, list, revoke."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from resolvers import auth
from resolvers.services import Services
from resolvers.storage import MAX_ID
from rest.v1.security import caller, client_address

__all__ = ["KeysController", "OthersKeysController"]


class LoginForKey(msgspec.Struct, forbid_unknown_fields=True):
    login: Annotated[str, msgspec.Meta(min_length=1, max_length=150)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    expires_at: str | None = None
    """ISO 8601 (naive: the user's zone); defaults to, and never exceeds, its valid_to."""


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    expires_at: str | None = None


class IssuedKeyOut(msgspec.Struct):
    id: int
    key: str
    """The secret: shown once, stored only as a digest."""
    name: str
    expires_at: str | None
    user: auth.KeyOwner


class CurrentKeyOut(msgspec.Struct):
    key: auth.ApiKey
    user: auth.KeyOwner


def _issued(issued: auth.IssuedKey, owner: auth.KeyOwner) -> IssuedKeyOut:
    expires = issued.key.expires_at
    return IssuedKeyOut(
        id=issued.key.id,
        key=issued.secret,
        name=issued.key.name,
        expires_at=expires.isoformat() if expires else None,
        user=owner,
    )


class KeysController(Controller):
    path = "/auth/keys"
    tags = ("keys",)

    @post("/", security=[])  # the login: a password, no key
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[LoginForKey],
        services: NamedDependency[Services],
        trusted_proxies: NamedDependency[frozenset[str]],
    ) -> IssuedKeyOut:
        """Exchange a login and password for a new API key (rate limited per account)."""
        issued, owner = await auth.issue_key_with_password(
            services,
            login=data.login,
            password=data.password,
            name=data.name,
            expires_at=data.expires_at,
            client_address=client_address(request, trusted_proxies),
        )
        return _issued(issued, owner)

    @get("/")
    async def list_own(self, services: NamedDependency[Services]) -> list[auth.ApiKey]:
        """The caller's own keys (metadata only), newest first."""
        principal = await caller()
        return await auth.list_keys(services, principal)

    @get("/current")
    async def current(self, services: NamedDependency[Services]) -> CurrentKeyOut:
        """Validate the presented key: its metadata and the user it acts as."""
        principal = await caller()
        key = await auth.current_key(services, principal)
        return CurrentKeyOut(key=key, user=auth.KeyOwner.of(principal))

    @delete("/current")
    async def revoke_current(self, services: NamedDependency[Services]) -> None:
        """Revoke the presented key; the next request with it is refused."""
        principal = await caller()
        await auth.revoke_key(services, principal, principal.key_id or 0)

    @delete("/{key_id:int}")
    async def revoke(
        self,
        key_id: Annotated[int, PathParameter(gt=0, le=MAX_ID)],
        services: NamedDependency[Services],
    ) -> None:
        """Revoke one of the caller's keys, or anyone's with manageUsers."""
        principal = await caller()
        await auth.revoke_key(services, principal, key_id)


class OthersKeysController(Controller):
    path = "/users/{user_id:int}/keys"
    tags = ("keys",)

    @post("/")
    async def create(
        self,
        user_id: Annotated[int, PathParameter(gt=0, le=MAX_ID)],
        data: JSONBody[NewKey],
        services: NamedDependency[Services],
    ) -> IssuedKeyOut:
        """Issue a key for another user (needs generateOthersApiKeys)."""
        principal = await caller()
        issued, owner = await auth.issue_key(
            services, principal, user_id=user_id, name=data.name, expires_at=data.expires_at
        )
        return _issued(issued, owner)
