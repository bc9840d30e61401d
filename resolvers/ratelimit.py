"""Failed-login limits per account and per client address, kept in the database.

The state is authoritative: it lives in `gw_login_failures`, so it is shared by every
worker and replica and never fails open when Valkey is down. A subject that reaches
its limit inside the window is locked until the window ends (429 with Retry-After).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Executable, Table, case, delete, literal, null, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from resolvers.errors import RateLimited
from resolvers.storage import UTCDateTime

if TYPE_CHECKING:  # services.py holds LoginLimits in its settings: import only for types
    from resolvers.services import Services

__all__ = ["LoginLimits", "account_subject", "address_subject", "check", "record_failure", "reset"]


@dataclass(frozen=True, slots=True)
class LoginLimits:
    max_failures: int = 5
    """Failed logins allowed per account inside one window."""
    max_failures_per_address: int = 50
    """Failed logins allowed per client address inside one window."""
    window: dt.timedelta = dt.timedelta(minutes=15)


def account_subject(login: str) -> str:
    return f"login:{login.strip().lower()[:150]}"


def address_subject(address: str) -> str:
    return f"addr:{address[:100]}"


async def check(services: Services, subjects: list[str]) -> None:
    """Raise `RateLimited` when any subject is locked now."""
    table = services.schema.system.login_failures
    now = services.clock()
    async with services.engine.connect() as conn:
        locks = await conn.scalars(
            select(table.c.locked_until).where(
                table.c.subject.in_(subjects), table.c.locked_until > now
            )
        )
        latest = max(locks, default=None)
    if latest is not None:
        raise RateLimited(
            "too many failed logins; try again later",
            retry_after=max(1, math.ceil((latest - now).total_seconds())),
        )


async def record_failure(services: Services, *, account: str, address: str) -> bool:
    """Count one failure for both subjects; True when either was already at its limit.

    Concurrent attempts all pass `check` before any failure is recorded; those counted
    past the limit must be answered as locked, or a burst would test many passwords.
    """
    limits = services.login_limits
    now = services.clock()
    async with services.writer.begin() as conn:
        table = services.schema.system.login_failures
        over = False
        for subject, limit in (
            (account, limits.max_failures),
            (address, limits.max_failures_per_address),
        ):
            failures = await conn.scalar(_count(conn, table, subject, limit, limits.window, now))
            over = over or (failures or 0) > limit
    return over


async def reset(services: Services, subject: str) -> None:
    table = services.schema.system.login_failures
    async with services.writer.begin() as conn:
        await conn.execute(delete(table).where(table.c.subject == subject))


def _count(  # noqa: PLR0917 - a private statement builder
    conn: AsyncConnection,
    table: Table,
    subject: str,
    limit: int,
    window: dt.timedelta,
    now: dt.datetime,
) -> Executable:
    """Add one failure to `subject`'s window in one atomic upsert, locking it at the limit;
    returns the count it reached.

    Every right-hand side reads the row as it was, on both backends, so concurrent
    failures from many workers all count.
    """
    now_ = literal(now, UTCDateTime())
    fresh_end = literal(now + window, UTCDateTime())
    expired = table.c.window_end <= now_
    failures = case((expired, 1), else_=table.c.failures + 1)
    window_end = case((expired, fresh_end), else_=table.c.window_end)
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(table).values(
        subject=subject,
        window_end=now + window,
        failures=1,
        locked_until=now + window if limit <= 1 else None,
    )
    return statement.on_conflict_do_update(
        index_elements=[table.c.subject],
        set_={
            "failures": failures,
            "window_end": window_end,
            "locked_until": case((failures >= limit, window_end), else_=null()),
        },
    ).returning(table.c.failures)
