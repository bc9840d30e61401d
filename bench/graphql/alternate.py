"""REST and GraphQL reads in process, in alternating rounds: CPU µs per request of each.

Usage: ``.venv/bin/python bench/graphql/alternate.py [rounds]`` (default 5)

The app is built and seeded as ``read_profile.py`` builds it and called as ASGI on
uvloop, 64 requests at a time, with the access log off. Each round measures every path
once, so slow spells of a noisy machine fall on all of them alike. Paths: the cached
REST list and its GraphQL twin over GET and POST, then a cached get cycling through
5,000 records over REST, GraphQL over GET (``$id`` in ``variables``) and GraphQL POST.
Prints each path's minimum, median and every round. To compare two commits, run it in a
``git worktree`` of each, alternately.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

import uvloop

from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
import read_profile as rp

N = 6400


def paths(app: rp.hit.ASGIApp, key: str, record_id: int) -> dict[str, rp.Request]:
    """The paths compared, by name: the cached REST list and its GraphQL twins over GET
    and POST, then a get cycling through `rp.CYCLE` records over each."""
    auth = [("Authorization", f"Bearer {key}")]
    post = [*auth, ("Content-Type", "application/json")]
    ids = range(record_id - rp.CYCLE + 1, record_id + 1)
    rest_list = quote(rp.coll.LIST_QUERY, safe="=&")
    list_get = urlencode({"query": rp.queries.LIST})
    list_post = json.dumps({"query": rp.queries.LIST}).encode()

    def rest_get(one: int) -> rp.Request:
        return lambda: rp.call(app, "GET", f"/api/v1/collections/Item/{one}", headers=auth)

    def graphql_get(one: int) -> rp.Request:
        variables = json.dumps({"id": one})
        query = urlencode({"query": rp.GET_BY_VARIABLE, "variables": variables})
        return lambda: rp.call(app, "GET", "/graphql", query=query, headers=auth)

    def graphql_post(one: int) -> rp.Request:
        body = json.dumps({"query": rp.GET_BY_VARIABLE, "variables": {"id": one}}).encode()
        return lambda: rp.call(app, "POST", "/graphql", headers=post, body=body)

    return {
        "REST list": lambda: rp.call(
            app, "GET", "/api/v1/collections/Item", query=rest_list, headers=auth
        ),
        "GraphQL list GET": lambda: rp.call(app, "GET", "/graphql", query=list_get, headers=auth),
        "GraphQL list POST": lambda: rp.call(app, "POST", "/graphql", headers=post, body=list_post),
        "REST get cycle": rp.cycling([rest_get(i) for i in ids]),
        "GraphQL GET $id cycle": rp.cycling([graphql_get(i) for i in ids]),
        "GraphQL POST $id cycle": rp.cycling([graphql_post(i) for i in ids]),
    }


async def warm(name: str, request: rp.Request) -> None:
    """Every entry of a path stored, as after the benchmark's warm-up; its answer checked."""
    for _ in range(rp.CYCLE + 1):
        await request()
    rp._checked(name, *await request())


async def session(settings: Settings, key: str, record_id: int, rounds: int) -> None:
    app = rp.hit.bench_app.build(settings)
    compared = paths(app, key, record_id)
    async with app.lifespan():
        for name, request in compared.items():
            await warm(name, request)
        measured: dict[str, list[float]] = {name: [] for name in compared}
        for _ in range(rounds):
            for name, request in compared.items():
                measured[name].append(await rp.per_request(request, N, concurrency=64))
    print("µs of CPU per request, 64 at a time: min, median, then every round")
    for name, values in measured.items():
        ordered = sorted(values)
        rounds_text = " ".join(f"{v:.1f}" for v in values)
        print(f"{name:>22}  {ordered[0]:6.1f}  {ordered[len(ordered) // 2]:6.1f}  {rounds_text}")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with rp.hit.seeded("jgw-alternate-") as (settings, prep):
        logging.getLogger("gateway.access").setLevel(logging.WARNING)
        uvloop.run(session(settings, prep.key, prep.last_id, rounds))


if __name__ == "__main__":
    main()
