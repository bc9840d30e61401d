"""Which exceptions mean "the database cannot serve right now", answered as `Unavailable`.

A PostgreSQL restart, a refused or timed-out connection, an exhausted pool, a statement
past `statement_timeout`, a busy SQLite file: the request that meets one of these gets
a 503 with `Retry-After` (REST) or `extensions.code = "unavailable"` (GraphQL), through
the one mapping each transport already has for `Unavailable`. Everything else stays an
unexpected error. What asyncpg raises, observed across a restart (see NOTES.md):

- while the socket is gone: `FileNotFoundError` / `ConnectionRefusedError`, unwrapped;
- while the server stops or starts: `CannotConnectNowError`, `AdminShutdownError`;
- queries in flight: `ConnectionDoesNotExistError` (SQLAlchemy invalidates the pool).
"""

from __future__ import annotations

import sqlite3

import asyncpg.exceptions
from sqlalchemy import exc as sa_exc

from resolvers.errors import Unavailable

__all__ = ["RETRY_AFTER", "as_unavailable", "is_outage"]

RETRY_AFTER = 1
"""Seconds a client is told to wait: a restart or a busy pool clears within a few."""

_DRIVER_OUTAGES: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.PostgresConnectionError,  # 08xxx: connection lost or refused
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutdown, starting up, canceled
    asyncpg.exceptions.TooManyConnectionsError,
    OSError,  # TimeoutError included
)
_SQLITE_BUSY = ("database is locked", "database is busy")


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database is down, unreachable, overloaded or too slow."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection within pool_timeout
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        return any(_driver_outage(cause) for cause in _causes(exc.orig))
    # Opening a connection raises the socket's own errors (and asyncio's timeout) unwrapped.
    return isinstance(exc, OSError)  # TimeoutError is an OSError


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The client's answer for an outage, or None when `exc` is not one."""
    if not is_outage(exc):
        return None
    return Unavailable(
        "the database is unavailable right now; retry shortly", retry_after=RETRY_AFTER
    )


def _causes(exc: BaseException | None) -> list[BaseException]:
    """`exc` and what it was raised from (SQLAlchemy's asyncpg adapter wraps the driver's)."""
    found: list[BaseException] = []
    while exc is not None and len(found) < 5:
        found.append(exc)
        exc = exc.__cause__
    return found


def _driver_outage(exc: BaseException) -> bool:
    if isinstance(exc, _DRIVER_OUTAGES):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(text in message for text in _SQLITE_BUSY)
    return False
