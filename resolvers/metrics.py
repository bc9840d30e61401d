"""Prometheus metrics of one gateway process (or of all workers, in multiprocess mode).

    jgw_http_requests_total{method,route,status}            counter
    jgw_http_request_duration_seconds{method,route,status}  histogram
    jgw_cache_requests_total{type,outcome}                  hit, miss, bypass, revalidated
    jgw_db_pool_connections{state}                          in_use, size (gauges)
    jgw_challenge_deliveries_total{channel,outcome}         delivered, failed
    jgw_key_leases_total{event}                             held, lost

`route` is the route template (`/api/v1/collections/Item/{record_id}`), never the
raw path, so label values stay few. With several workers (`gateway serve --workers N`)
every worker writes its values to files in one directory (prometheus_client's
multiprocess mode) and `/metrics` sums them, whichever worker answers.

Recording a request costs two dictionary look-ups and three locked additions: the
labelled children are made once per (method, route, status) and kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["CACHE_OUTCOMES", "CONTENT_TYPE", "MULTIPROC_DIR", "GatewayMetrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
"""Set by `gateway serve --workers N` (N > 1): the directory where workers pool metrics."""
CACHE_OUTCOMES = ("hit", "miss", "bypass", "revalidated")

# Cached reads take a fraction of a millisecond; the default buckets start at 5 ms.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_COLLECTIONS = "/api/v1/collections/"
_MAX_CHILDREN = 5000
"""Distinct (method, route, status) kept at most; routes are templates, so far fewer."""

_Children = tuple[Any, Any]


class GatewayMetrics:
    """The gateway's metrics in a registry of their own (tests build many apps per process).

    `multiprocess_dir`: the directory shared by all workers of one `gateway serve`.
    """

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        if multiprocess_dir is not None and not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus_client picks its value class when first imported; a worker forked
            # from a parent that imported it before the directory was set must switch here.
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "jgw_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "jgw_http_request_duration_seconds",
            "Time from the request's arrival to its last body byte handed to the server.",
            ("method", "route", "status"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._cache = Counter(
            "jgw_cache_requests",
            "Cached reads by collection type (or route) and outcome.",
            ("type", "outcome"),
            registry=self.registry,
        )
        self._pool = Gauge(
            "jgw_db_pool_connections",
            "Database pool connections in use and the pool's size.",
            ("state",),
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._deliveries = Counter(
            "jgw_challenge_deliveries",
            "Challenge messages handed over or failed, by channel.",
            ("channel", "outcome"),
            registry=self.registry,
        )
        self._leases = Counter(
            "jgw_key_leases",
            "Key leases begun (held) and lost while held (lost), summed over workers.",
            ("event",),
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], _Children] = {}
        self._cache_children: dict[tuple[str, str], Any] = {}

    # --- HTTP ----------------------------------------------------------------------------

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._new_children(key)
        children[0].inc()
        children[1].observe(seconds)

    def cache(self, route: str, outcome: str) -> None:
        key = (route, outcome)
        child = self._cache_children.get(key)
        if child is None:
            if len(self._cache_children) >= _MAX_CHILDREN:
                return
            child = self._cache.labels(_cache_type(route), outcome)
            self._cache_children[key] = child
        child.inc()

    def _new_children(self, key: tuple[str, str, int]) -> _Children:
        method, route, status = key
        if len(self._children) >= _MAX_CHILDREN:
            route = "other"
        children = (
            self._requests.labels(method, route, str(status)),
            self._latency.labels(method, route, str(status)),
        )
        if len(self._children) < _MAX_CHILDREN:
            self._children[key] = children
        return children

    # --- resources -----------------------------------------------------------------------

    def watch_pool(self, engine: AsyncEngine) -> None:
        """Keep the pool gauges current from the pool's own checkout and checkin events."""
        size = getattr(engine.sync_engine.pool, "size", None)
        self._pool.labels("size").set(size() if callable(size) else 0)
        in_use = self._pool.labels("in_use")

        # The pool fires `checkin` before it takes the connection back, so its own count
        # is one too high there: count the events instead.
        def checked_out(*_args: object) -> None:
            in_use.inc()

        def checked_in(*_args: object) -> None:
            in_use.dec()

        event.listen(engine.sync_engine, "checkout", checked_out)
        event.listen(engine.sync_engine, "checkin", checked_in)

    def delivery(self, channel: str, outcome: str) -> None:
        """A challenge message's send: `delivered` or `failed`."""
        self._deliveries.labels(channel, outcome).inc()

    def key_lease(self, event: str) -> None:
        """A worker's key lease (`resolvers.key_leases`): `held` or `lost`."""
        self._leases.labels(event).inc()

    # --- exposition ----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text format for a scrape: this process's values, or every worker's."""
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        collector = multiprocess.MultiProcessCollector
        collector(registry, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def close(self) -> None:
        """On a worker's way out: its live gauges no longer count."""
        if self.multiprocess_dir is not None:
            dead = multiprocess.mark_process_dead
            dead(os.getpid(), str(self.multiprocess_dir))  # type: ignore[no-untyped-call]


def _cache_type(route: str) -> str:
    """`/api/v1/collections/Item/{record_id}` → `Item`; other routes name themselves."""
    if route.startswith(_COLLECTIONS):
        return route[len(_COLLECTIONS) :].split("/", 1)[0]
    return route
