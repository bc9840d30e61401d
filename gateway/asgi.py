"""ASGI entry point for servers: `gateway.asgi:app_from_env` is an app factory."""

from __future__ import annotations

import os

from litestar import Litestar

from gateway.app import create_app
from gateway.runtime import configure_logging
from gateway.settings import Settings

__all__ = ["app_from_env"]


def app_from_env() -> Litestar:
    """Build the app from `GATEWAY_*` variables (each worker process calls this once)."""
    settings = Settings.from_env(os.environ)
    configure_logging(settings)
    return create_app(settings, freeze_gc=True)
