"""Users: rows with an argon2id hash, roles and groups (the tenant file defines those).

Administration needs `manageUsers` and is bounded by the actor's own rights: an actor
grants only roles it holds itself, manages only users whose rights it covers, and
never changes its own roles, groups, activation or validity. Every change bumps the
user's `security_version` (so its principal fingerprint changes) and evicts its cached
key snapshots before and after it commits.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers.auth import evict_user, load_user_snapshot
from resolvers.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from resolvers.principal import Principal, effective_roles
from resolvers.services import Services
from resolvers.tenant import ADMIN_ROLE, Permission
from resolvers.timezones import is_zone, parse_instant

__all__ = [
    "BootstrapResult",
    "UserView",
    "check_password",
    "create_user",
    "delete_user",
    "ensure_admin",
    "get_user",
    "list_users",
    "register_user",
    "update_user",
]

_SELF_LOCKED = frozenset({"roles", "groups", "active", "valid_from", "valid_to"})
_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{2,149}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9][0-9 ().-]{3,30}")
_MAX_EMAIL = 254  # the column's width; PostgreSQL refuses longer values
_MIN_PASSWORD, _MAX_PASSWORD = 10, 1024
_MAX_ASSIGNMENTS = 50
MAX_PAGE = 1000
MAX_OFFSET = 1_000_000


@dataclass(frozen=True, slots=True)
class UserView:
    """A user as the API shows it: never a hash."""

    id: int
    login: str
    email: str | None
    phone: str | None
    timezone: str | None
    valid_from: dt.datetime | None
    valid_to: dt.datetime | None
    active: bool
    roles: tuple[str, ...]
    groups: tuple[str, ...]
    created_on: dt.datetime
    updated_on: dt.datetime


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    created: bool
    generated_password: str | None = None
    """Shown once to the operator when no password was configured."""


# --- reading ----------------------------------------------------------------------


async def list_users(
    services: Services, actor: Principal, *, limit: int = 100, offset: int = 0
) -> list[UserView]:
    actor.require(Permission.MANAGE_USERS)
    if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
        raise Invalid(
            "bad paging", [FieldError("limit", f"1 to {MAX_PAGE}; offset 0 to {MAX_OFFSET}")]
        )
    users = services.schema.system.users
    query = select(users).order_by(users.c.id).limit(limit).offset(offset)
    async with services.engine.connect() as conn:
        return await _views(conn, services, actor, query)


async def get_user(services: Services, actor: Principal, user_id: int) -> UserView:
    actor.require(Permission.MANAGE_USERS)
    users = services.schema.system.users
    async with services.engine.connect() as conn:
        found = await _views(conn, services, actor, select(users).where(users.c.id == user_id))
    if not found:
        raise NotFound(f"no user with id {user_id}")
    return found[0]


async def _views(
    conn: AsyncConnection, services: Services, actor: Principal, query: Select[Any]
) -> list[UserView]:
    """Render the users `query` selects, with their roles and groups, in three queries."""
    system = services.schema.system
    rows = (await conn.execute(query)).all()
    ids = [row.id for row in rows]
    roles: dict[int, list[str]] = {i: [] for i in ids}
    groups: dict[int, list[str]] = {i: [] for i in ids}
    for user_id, role in await conn.execute(
        select(system.user_roles.c.user_id, system.user_roles.c.role).where(
            system.user_roles.c.user_id.in_(ids)
        )
    ):
        roles[user_id].append(role)
    for user_id, group in await conn.execute(
        select(system.user_groups.c.user_id, system.user_groups.c.group_name).where(
            system.user_groups.c.user_id.in_(ids)
        )
    ):
        groups[user_id].append(group)
    zone = actor.zone

    def local(value: dt.datetime | None) -> dt.datetime | None:
        return value.astimezone(zone) if value is not None else None

    return [
        UserView(
            id=row.id,
            login=row.login,
            email=row.email,
            phone=row.phone,
            timezone=row.timezone,
            valid_from=local(row.valid_from),
            valid_to=local(row.valid_to),
            active=row.active,
            roles=tuple(sorted(roles[row.id])),
            groups=tuple(sorted(groups[row.id])),
            created_on=row.created_on.astimezone(zone),
            updated_on=row.updated_on.astimezone(zone),
        )
        for row in rows
    ]


# --- writing ----------------------------------------------------------------------


async def create_user(services: Services, actor: Principal, data: Mapping[str, Any]) -> UserView:
    actor.require(Permission.MANAGE_USERS)
    user_id = await _insert_user(services, actor, data, active=None)
    return await get_user(services, actor, user_id)


async def register_user(
    services: Services, actor: Principal, data: Mapping[str, Any], *, active: bool
) -> int:
    """Create a user for `registerUsers` (see `challenges.register`); its id.

    The same rules as `create_user` bound it: the new user gets no role the actor lacks.
    Activation is not the caller's to set: a challenge decides it.
    """
    actor.require(Permission.REGISTER_USERS)
    if "active" in data:
        raise Invalid("the user is not valid", [FieldError("user.active", "set by the challenge")])
    return await _insert_user(services, actor, data, active=active)


async def _insert_user(
    services: Services, actor: Principal, data: Mapping[str, Any], *, active: bool | None
) -> int:
    fields = _parse(services, actor, data, partial=False)
    _check_grants(services, actor, fields)
    password = fields.pop("password", None)
    roles = fields.pop("roles", [])
    groups = fields.pop("groups", [])
    if active is not None:
        fields["active"] = active
    now = services.clock()
    users = services.schema.system.users
    password_hash = await services.passwords.hash(password) if password else None
    try:
        async with services.writer.begin() as conn:
            user_id = await conn.scalar(
                insert(users)
                .values(
                    **{"active": True, **fields},
                    password_hash=password_hash,
                    security_version=1,
                    created_on=now,
                    updated_on=now,
                )
                .returning(users.c.id)
            )
            await _assign(conn, services, int(user_id or 0), roles=roles, groups=groups)
    except IntegrityError as exc:
        raise Conflict("that login is already taken", field="login") from exc
    return int(user_id or 0)


async def update_user(
    services: Services, actor: Principal, user_id: int, data: Mapping[str, Any]
) -> UserView:
    """Apply a partial change (PATCH semantics)."""
    actor.require(Permission.MANAGE_USERS)
    fields = _parse(services, actor, data, partial=True)
    await _check_target(services, actor, user_id)
    if user_id == actor.user_id and (locked := sorted(_SELF_LOCKED & fields.keys())):
        raise Forbidden(f"you cannot change your own {', '.join(locked)}")
    _check_grants(services, actor, fields)
    password = fields.pop("password", None)
    roles = fields.pop("roles", None)
    groups = fields.pop("groups", None)
    if password:
        fields["password_hash"] = await services.passwords.hash(password)
    users = services.schema.system.users
    await evict_user(services, user_id)
    try:
        async with services.writer.begin() as conn:
            current = (
                await conn.execute(
                    select(users.c.valid_from, users.c.valid_to).where(users.c.id == user_id)
                )
            ).one()
            _check_window(
                fields.get("valid_from", current.valid_from),
                fields.get("valid_to", current.valid_to),
            )
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(
                    **fields,
                    security_version=users.c.security_version + 1,
                    updated_on=services.clock(),
                )
            )
            await _assign(conn, services, user_id, roles=roles, groups=groups, replace=True)
    except IntegrityError as exc:
        raise Conflict("that login is already taken", field="login") from exc
    await evict_user(services, user_id)
    return await get_user(services, actor, user_id)


async def delete_user(services: Services, actor: Principal, user_id: int) -> None:
    """Delete a user with its keys and assignments; its records keep their attribution ids."""
    actor.require(Permission.MANAGE_USERS)
    if user_id == actor.user_id:
        raise Forbidden("you cannot delete yourself")
    await _check_target(services, actor, user_id)
    users = services.schema.system.users
    await evict_user(services, user_id)
    async with services.writer.begin() as conn:
        await conn.execute(delete(users).where(users.c.id == user_id))
    await evict_user(services, user_id)


async def _assign(
    conn: AsyncConnection,
    services: Services,
    user_id: int,
    *,
    roles: Sequence[str] | None,
    groups: Sequence[str] | None,
    replace: bool = False,
) -> None:
    system = services.schema.system
    if roles is not None:
        if replace:
            await conn.execute(
                delete(system.user_roles).where(system.user_roles.c.user_id == user_id)
            )
        if roles:
            await conn.execute(
                insert(system.user_roles), [{"user_id": user_id, "role": r} for r in roles]
            )
    if groups is not None:
        if replace:
            await conn.execute(
                delete(system.user_groups).where(system.user_groups.c.user_id == user_id)
            )
        if groups:
            await conn.execute(
                insert(system.user_groups), [{"user_id": user_id, "group_name": g} for g in groups]
            )


async def _check_target(services: Services, actor: Principal, user_id: int) -> None:
    """The actor may manage only users whose effective roles its own cover."""
    async with services.engine.connect() as conn:
        snapshot = await load_user_snapshot(conn, services, user_id)
    if snapshot is None:
        raise NotFound(f"no user with id {user_id}")
    theirs = effective_roles(services.tenant, snapshot.roles, snapshot.groups)
    if not actor.covers(theirs):
        raise Forbidden("this user holds roles you do not hold")


def _check_grants(services: Services, actor: Principal, fields: Mapping[str, Any]) -> None:
    granted = effective_roles(services.tenant, fields.get("roles", ()), fields.get("groups", ()))
    if not actor.covers(granted):
        extra = ", ".join(sorted(granted - actor.roles))
        raise Forbidden(f"you cannot grant roles you do not hold: {extra}")


def _check_window(valid_from: dt.datetime | None, valid_to: dt.datetime | None) -> None:
    if valid_from is not None and valid_to is not None and valid_from >= valid_to:
        raise Invalid("empty validity window", [FieldError("valid_to", "must be after valid_from")])


# --- input ------------------------------------------------------------------------


def _text(pattern: re.Pattern[str], message: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if isinstance(value, str) and pattern.fullmatch(value):
            return value
        raise ValueError(message)

    return check


def _optional(check: Callable[[object], str]) -> Callable[[object], str | None]:
    return lambda value: None if value is None else check(value)


def _email(value: object) -> str:
    if isinstance(value, str) and len(value) <= _MAX_EMAIL and _EMAIL.fullmatch(value):
        return value
    raise ValueError(f"not an e-mail address of at most {_MAX_EMAIL} characters")


def _instant(zone: ZoneInfo) -> Callable[[object], dt.datetime | None]:
    """An ISO 8601 instant, naive ones read in the actor's zone."""
    return lambda value: None if value is None else parse_instant(value, zone)


def _zone(value: object) -> str:
    if isinstance(value, str) and is_zone(value):
        return value
    raise ValueError("not an IANA time zone")


def check_password(value: object) -> str:
    """A password the gateway accepts (ValueError with the rule otherwise)."""
    if isinstance(value, str) and _MIN_PASSWORD <= len(value) <= _MAX_PASSWORD:
        return value
    raise ValueError(f"{_MIN_PASSWORD} to {_MAX_PASSWORD} characters")


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("must be true or false")


def _names(known: Mapping[str, object], what: str) -> Callable[[object], list[str]]:
    def check(value: object) -> list[str]:
        if not (
            isinstance(value, list)
            and len(value) <= _MAX_ASSIGNMENTS
            and all(isinstance(v, str) for v in value)
        ):
            raise ValueError(f"a list of at most {_MAX_ASSIGNMENTS} names")
        if unknown := [v for v in value if v not in known]:
            raise ValueError(f"unknown {what}: {', '.join(unknown)}")
        return sorted(set(value))

    return check


_SIMPLE: dict[str, Callable[[object], object]] = {
    "login": _text(
        _LOGIN, "3 to 150 letters, digits or . _ @ + -, starting with a letter or digit"
    ),
    "email": _optional(_email),
    "phone": _optional(_text(_PHONE, "not a phone number")),
    "timezone": _optional(_zone),
    "password": check_password,
    "active": _flag,
}


def _parse(
    services: Services, actor: Principal, data: Mapping[str, Any], *, partial: bool
) -> dict[str, Any]:
    """Validate user input shared by every transport; unknown fields are refused, not dropped."""
    checks: dict[str, Callable[[object], object]] = {
        **_SIMPLE,
        "valid_from": _instant(actor.zone),
        "valid_to": _instant(actor.zone),
        "roles": _names(services.tenant.roles, "roles"),
        "groups": _names(services.tenant.groups, "groups"),
    }
    errors = [FieldError(k, "unknown field") for k in data if k not in checks]
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if name in checks:
            try:
                fields[name] = checks[name](value)
            except ValueError as exc:
                errors.append(FieldError(name, str(exc)))
    if not partial and "login" not in data:
        errors.append(FieldError("login", "is required"))
    if not errors:
        try:
            _check_window(fields.get("valid_from"), fields.get("valid_to"))
        except Invalid as exc:
            errors.extend(exc.errors)
    if errors:
        raise Invalid("the user is not valid", errors)
    return fields


# --- bootstrap --------------------------------------------------------------------


async def ensure_admin(services: Services, *, login: str, password: str | None) -> BootstrapResult:
    """Create the bootstrap admin with the built-in `admin` role unless that login exists."""
    try:
        return await _create_admin(services, login=login, password=password)
    except IntegrityError:  # another process created it first
        return BootstrapResult(created=False)


async def _create_admin(services: Services, *, login: str, password: str | None) -> BootstrapResult:
    users = services.schema.system.users
    async with services.writer.begin() as conn:
        exists = await conn.scalar(select(func.count()).where(users.c.login == login))
        if exists:
            return BootstrapResult(created=False)
        generated = None if password else secrets.token_urlsafe(18)
        password_hash = await services.passwords.hash(password or str(generated))
        now = services.clock()
        user_id = await conn.scalar(
            insert(users)
            .values(
                login=login,
                password_hash=password_hash,
                active=True,
                security_version=1,
                created_on=now,
                updated_on=now,
            )
            .returning(users.c.id)
        )
        await conn.execute(
            insert(services.schema.system.user_roles).values(user_id=user_id, role=ADMIN_ROLE)
        )
    return BootstrapResult(created=True, generated_password=generated)
