"""Readiness: can this process reach its database and its Valkey right now?"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import text

from resolvers.services import Services

__all__ = ["Readiness", "check_readiness"]

_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Readiness:
    database: str
    valkey: str

    @property
    def ready(self) -> bool:
        return self.database == "ok" and self.valkey == "ok"


async def check_readiness(services: Services) -> Readiness:
    database, valkey = await asyncio.gather(_database(services), _valkey(services))
    return Readiness(database=database, valkey=valkey)


async def _database(services: Services) -> str:
    try:
        async with asyncio.timeout(_TIMEOUT), services.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
        return f"unavailable: {type(exc).__name__}"
    return "ok"


async def _valkey(services: Services) -> str:
    try:
        async with asyncio.timeout(_TIMEOUT):
            await services.valkey.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
        return f"unavailable: {type(exc).__name__}"
    return "ok"
