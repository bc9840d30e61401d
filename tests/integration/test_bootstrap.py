"""The bootstrap admin: created once, with the built-in admin role and a real argon2id hash."""

from __future__ import annotations

from sqlalchemy import select

from resolvers.services import Services
from resolvers.users import ensure_admin


async def test_admin_is_created_once_with_the_admin_role(services: Services) -> None:
    first = await ensure_admin(services, login="root", password="s3cret-enough")
    second = await ensure_admin(services, login="root", password="another")
    assert first.created
    assert first.generated_password is None
    assert not second.created
    system = services.schema.system
    async with services.engine.connect() as conn:
        user = (await conn.execute(select(system.users))).one()
        roles = (await conn.scalars(select(system.user_roles.c.role))).all()
    assert user.login == "root"
    assert user.active
    assert roles == ["admin"]
    assert user.password_hash.startswith("$argon2id$")
    assert (await services.passwords.verify(user.password_hash, "s3cret-enough")).ok
    assert not (await services.passwords.verify(user.password_hash, "another")).ok


async def test_a_generated_password_works(services: Services) -> None:
    result = await ensure_admin(services, login="root", password=None)
    assert result.generated_password is not None
    assert len(result.generated_password) >= 20
    users = services.schema.system.users
    async with services.engine.connect() as conn:
        stored = await conn.scalar(select(users.c.password_hash))
    assert (await services.passwords.verify(stored, result.generated_password)).ok
