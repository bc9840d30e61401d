"""How the GraphQL edge reads a POSTed body, message by message, as granian sends it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from schema.http import _read, _replaying


class Server:
    """A server's `receive`: the given messages in order, counting those taken."""

    def __init__(self, messages: Iterable[dict[str, Any]]) -> None:
        self._messages = list(messages)
        self.taken = 0

    async def __call__(self) -> dict[str, Any]:
        message = self._messages[self.taken]
        self.taken += 1
        return message


def _chunk(body: bytes, *, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


_END = _chunk(b"", more=False)  # granian's own message after the last chunk
_GONE = {"type": "http.disconnect"}


async def test_reading_stops_at_the_declared_length() -> None:
    server = Server([_chunk(b'{"query":"{ a }"}', more=True), _END])
    assert await _read(server, 17) == b'{"query":"{ a }"}'
    assert server.taken == 1


async def test_a_body_in_several_chunks_is_joined() -> None:
    server = Server([_chunk(b"ab", more=True), _chunk(b"cd", more=True), _END])
    assert await _read(server, 4) == b"abcd"
    assert server.taken == 2


async def test_a_body_of_another_length_than_declared_is_not_read() -> None:
    assert await _read(Server([_chunk(b"abc", more=True), _END]), 2) is None
    assert await _read(Server([_chunk(b"ab", more=True), _END]), 3) is None
    assert await _read(Server([_chunk(b"ab", more=False)]), 3) is None
    assert await _read(Server([_GONE]), 3) is None


async def test_an_empty_declared_body_takes_one_message() -> None:
    server = Server([_END])
    assert await _read(server, 0) == b""
    assert server.taken == 1


async def test_the_replay_gives_the_body_then_skips_the_end_left_unread() -> None:
    server = Server([_chunk(b"ab", more=True), _END, _GONE])
    body = await _read(server, 2)
    assert body == b"ab"
    replay = _replaying(body, server)
    assert await replay() == _chunk(b"ab", more=False)
    assert await replay() == _GONE
    assert server.taken == 3
