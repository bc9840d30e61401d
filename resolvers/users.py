"""Users: rows with an argon2id hash, roles and groups (the tenant file defines those)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from resolvers.services import Services
from resolvers.tenant import ADMIN_ROLE

__all__ = ["BootstrapResult", "ensure_admin"]


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    created: bool
    generated_password: str | None = None
    """Shown once to the operator when no password was configured."""


async def ensure_admin(services: Services, *, login: str, password: str | None) -> BootstrapResult:
    """Create the bootstrap admin with the built-in `admin` role unless that login exists."""
    try:
        return await _create_admin(services, login=login, password=password)
    except IntegrityError:  # another process created it first
        return BootstrapResult(created=False)


async def _create_admin(services: Services, *, login: str, password: str | None) -> BootstrapResult:
    users = services.schema.system.users
    async with services.engine.begin() as conn:
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
