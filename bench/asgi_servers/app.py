"""Minimal Litestar app used to benchmark ASGI servers: ``GET /hello`` -> ``{"hello": "world"}``."""

from litestar import Litestar, get


@get("/hello", sync_to_thread=False)
def hello() -> dict[str, str]:
    """Return a constant JSON body."""
    return {"hello": "world"}


app = Litestar(route_handlers=[hello], debug=False)
