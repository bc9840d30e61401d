"""Password hashing with argon2id, off the event loop and under a concurrency cap.

One `Passwords` per process. `verify_or_dummy` spends the same work for an unknown
login as for a wrong password, so neither timing nor answer tells them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, ParamSpec, TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from resolvers.errors import Unavailable

__all__ = ["PasswordProfile", "Passwords", "Verification"]

PasswordProfile = Literal["rfc9106_low_memory", "test"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

# A cheap profile for test suites only: argon2id with the smallest sane cost.
_TEST_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=1,
    memory_cost=1024,
    parallelism=1,
)
_PROFILES = {"rfc9106_low_memory": RFC_9106_LOW_MEMORY, "test": _TEST_PARAMETERS}


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    new_hash: str | None = None
    """Set when the stored hash used older parameters and should be replaced."""


class Passwords:
    """Hashes and verifies passwords in worker threads, at most `concurrency` at once."""

    def __init__(
        self, profile: PasswordProfile, *, concurrency: int = 4, queue_timeout: float = 2.0
    ) -> None:
        self.hasher = argon2.PasswordHasher.from_parameters(_PROFILES[profile])
        self._slots = asyncio.Semaphore(concurrency)
        self._queue_timeout = queue_timeout
        self._dummy_hash = self.hasher.hash("not a real password")
        self.calls = 0
        """Hashes and verifications performed, for tests that count work."""

    async def hash(self, password: str) -> str:
        return await self._run(self.hasher.hash, password)

    async def verify(self, stored_hash: str, password: str) -> Verification:
        ok = await self._run(self._verify, stored_hash, password)
        if ok and self.hasher.check_needs_rehash(stored_hash):
            return Verification(ok=True, new_hash=await self.hash(password))
        return Verification(ok=ok)

    async def verify_or_dummy(self, stored_hash: str | None, password: str) -> Verification:
        """Verify against `stored_hash`, or burn one verification when there is none."""
        if stored_hash is None:
            await self._run(self._verify, self._dummy_hash, password)
            return Verification(ok=False)
        return await self.verify(stored_hash, password)

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _run(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            await asyncio.wait_for(self._slots.acquire(), self._queue_timeout)
        except TimeoutError as exc:
            raise Unavailable("too many password checks in progress", retry_after=1) from exc
        try:
            self.calls += 1
            return await asyncio.to_thread(fn, *args, **kwargs)
        finally:
            self._slots.release()
