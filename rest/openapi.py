"""OpenAPI at the contract's paths: `/api/v1/openapi.json` and `/api/v1/docs`.

Litestar's OpenAPI router answers unknown paths below its own with an HTML page;
mounted at the JSON document's own path, that catch-all stays out of `/api/v1`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin

__all__ = ["OPENAPI_PATH", "docs", "openapi_config"]

OPENAPI_PATH = "/api/v1/openapi.json"


class _Scalar(ScalarRenderPlugin):
    @staticmethod
    def get_openapi_json_route(_request: Request[Any, Any, Any]) -> str:
        return OPENAPI_PATH


def openapi_config(title: str) -> OpenAPIConfig:
    return OpenAPIConfig(
        title=title,
        version="1",
        path=OPENAPI_PATH,
        render_plugins=[JsonRenderPlugin(path="/")],
    )


_SCALAR = _Scalar()


@get("/api/v1/docs", include_in_schema=False, media_type="text/html", sync_to_thread=False)
def docs(request: Request[Any, Any, Any]) -> bytes:
    """The interactive API reference, rendered from the same document."""
    schema = request.app.openapi_schema.to_schema()
    return _SCALAR.render(request, schema)
