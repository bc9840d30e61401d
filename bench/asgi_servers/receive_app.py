"""What reading a request body costs under granian, without any framework.

``GET /`` and ``POST /skip`` answer at once; ``POST /`` first awaits the body
(``receive()``), as every handler of a POSTed GraphQL operation must; ``POST /all`` reads
on until ``more_body`` is false, which under granian takes a second message (an empty
one). Not part of the product. Results: ``bench/results/granian-receive-*.md``.

    taskset -c 0 .venv/bin/python -m granian --interface asgi --workers 1 --port 18555 \\
        --log-level warning --no-access-log --working-dir bench/asgi_servers receive_app:app
    taskset -c 1 wrk -t2 -c64 -d5s http://127.0.0.1:18555/
    taskset -c 1 wrk -t2 -c64 -d5s -s bench/asgi_servers/post.lua http://127.0.0.1:18555/skip
    taskset -c 1 wrk -t2 -c64 -d5s -s bench/asgi_servers/post.lua http://127.0.0.1:18555/
    taskset -c 1 wrk -t2 -c64 -d5s -s bench/asgi_servers/post.lua http://127.0.0.1:18555/all
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

_BODY = b'{"ok":true}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"11")]


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST" and scope["path"] == "/all":
        while (await receive()).get("more_body", False):
            pass
    elif scope["method"] == "POST" and scope["path"] != "/skip":
        await receive()
    elif scope["path"] == "/yield":
        await asyncio.sleep(0)  # one suspension, as any I/O (a Valkey read) costs
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})
