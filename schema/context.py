"""The per-request GraphQL context: who acts, the reference loaders, what the cache did.

Built by the transport (`schema.http`) for each request, or directly by a test that
calls `schema.execute(...)`. Field resolvers read it through `strawberry.Info`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from strawberry.dataloader import DataLoader

from resolvers import reads
from resolvers.cache import Cached, Status
from resolvers.errors import Unauthenticated
from resolvers.principal import Principal
from resolvers.services import Services

__all__ = ["GraphQLContext", "Record", "combined_status", "decode_records"]

Record = dict[str, Any]
"""A record as REST renders it (decoded JSON); GraphQL fields read its keys."""

_DECODER = msgspec.json.Decoder()
_BATCH = reads.MAX_IDS


class GraphQLContext(msgspec.Struct, kw_only=True):
    services: Services
    principal: Principal | None = None
    """None only for a request that renders GraphiQL (no operation runs)."""
    client_address: str = "unknown"
    """The peer (behind trusted proxies, the client), for login rate limits."""
    fresh: bool = False
    """The request said `Cache-Control: no-cache`: every read bypasses the cache."""
    cache_statuses: list[Status] = msgspec.field(default_factory=list)
    """What the response cache did for each read of the operation (for `X-Cache`)."""
    failed: bool = False
    """The operation answered with errors (then the response gets no ETag)."""
    loaders: dict[str, DataLoader[int, Record | None]] = msgspec.field(default_factory=dict)

    def acting(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("missing or malformed API key")
        return self.principal

    def remember(self, cached: Cached) -> Cached:
        self.cache_statuses.append(cached.status)
        return cached

    def cache_status(self) -> Status | None:
        return combined_status(self.cache_statuses)

    def loader(self, type_name: str) -> DataLoader[int, Record | None]:
        """Records of `type_name` by id, batched per event-loop turn into one list read."""
        found = self.loaders.get(type_name)
        if found is None:

            async def load(ids: Sequence[int]) -> list[Record | None]:
                return await self._load(type_name, ids)

            found = self.loaders[type_name] = DataLoader(load_fn=load, max_batch_size=_BATCH)
        return found

    async def _load(self, type_name: str, ids: Sequence[int]) -> list[Record | None]:
        """One `list_body` per batch: the same list read (and cache entry) REST would make."""
        found = self.remember(
            await reads.by_ids_body(self.services, self.acting(), type_name, ids, fresh=self.fresh)
        )
        by_id = {r["id"]: r for r in decode_records(found.body)}
        return [by_id.get(i) for i in ids]


def combined_status(statuses: list[Status]) -> Status | None:
    """BYPASS if any read bypassed the cache, else MISS if any missed, else HIT."""
    for status in ("BYPASS", "MISS", "HIT"):
        if status in statuses:
            return status
    return None


def decode_records(body: bytes) -> list[Record]:
    """The `data` list of a list body."""
    page: dict[str, Any] = _DECODER.decode(body)
    data: list[Record] = page["data"]
    return data
