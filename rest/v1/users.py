"""`/api/v1/users`: user administration (needs manageUsers; rules in resolvers.users)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter, SkipValidation

from resolvers import users
from resolvers.errors import FieldError, Invalid
from resolvers.services import Services
from resolvers.storage import MAX_ID
from rest.v1.security import caller

__all__ = ["UsersController"]

_Name = Annotated[str, msgspec.Meta(max_length=150)]


class UserIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Fields of a user; on PATCH only the fields sent change. `password` is write-only.

    This documents the body; `resolvers.users` validates it, so that a request with
    several unknown or malformed fields hears about all of them, not just the first.
    """

    login: str | msgspec.UnsetType = msgspec.UNSET
    email: str | msgspec.UnsetType | None = msgspec.UNSET
    phone: str | msgspec.UnsetType | None = msgspec.UNSET
    password: str | msgspec.UnsetType = msgspec.UNSET
    timezone: str | msgspec.UnsetType | None = msgspec.UNSET
    valid_from: str | msgspec.UnsetType | None = msgspec.UNSET
    """ISO 8601; naive means the caller's zone."""
    valid_to: str | msgspec.UnsetType | None = msgspec.UNSET
    active: bool | msgspec.UnsetType = msgspec.UNSET
    roles: list[_Name] | msgspec.UnsetType = msgspec.UNSET
    groups: list[_Name] | msgspec.UnsetType = msgspec.UNSET


_UserBody = JSONBody[SkipValidation[UserIn]]
"""Documented as `UserIn`, received as the decoded JSON value (see `_fields`)."""


def _fields(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid("the body must be a JSON object", [FieldError("body", "expected an object")])
    return data


class UsersController(Controller):
    path = "/users"
    tags = ("users",)

    @get("/")
    async def list_users(
        self,
        services: NamedDependency[Services],
        limit: Annotated[int, QueryParameter(name="_limit", ge=1, le=users.MAX_PAGE)] = 100,
        offset: Annotated[int, QueryParameter(name="_offset", ge=0, le=users.MAX_OFFSET)] = 0,
    ) -> list[users.UserView]:
        """Users in id order."""
        principal = await caller()
        return await users.list_users(services, principal, limit=limit, offset=offset)

    @post("/")
    async def create(
        self,
        data: _UserBody,
        services: NamedDependency[Services],
    ) -> users.UserView:
        """Create a user; roles and groups only within the caller's own."""
        principal = await caller()
        return await users.create_user(services, principal, _fields(data))

    @get("/{user_id:int}")
    async def get_one(
        self,
        user_id: Annotated[int, PathParameter(gt=0, le=MAX_ID)],
        services: NamedDependency[Services],
    ) -> users.UserView:
        principal = await caller()
        return await users.get_user(services, principal, user_id)

    @patch("/{user_id:int}")
    async def update(
        self,
        user_id: Annotated[int, PathParameter(gt=0, le=MAX_ID)],
        data: _UserBody,
        services: NamedDependency[Services],
    ) -> users.UserView:
        """Change the fields sent; the user's keys see the change on their next request."""
        principal = await caller()
        return await users.update_user(services, principal, user_id, _fields(data))

    @delete("/{user_id:int}")
    async def remove(
        self,
        user_id: Annotated[int, PathParameter(gt=0, le=MAX_ID)],
        services: NamedDependency[Services],
    ) -> None:
        principal = await caller()
        await users.delete_user(services, principal, user_id)
