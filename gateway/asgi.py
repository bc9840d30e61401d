"""ASGI entry point for servers: `gateway.asgi:app_from_env` is an app factory."""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar

from gateway.app import create_app
from gateway.runtime import configure_logging
from gateway.settings import Settings
from resolvers.metrics import MULTIPROC_DIR

__all__ = ["app_from_env"]


def app_from_env() -> Litestar:
    """Build the app from `GATEWAY_*` variables (each worker process calls this once)."""
    settings = Settings.from_env(os.environ)
    metrics_dir = os.environ.get(MULTIPROC_DIR)
    app = create_app(
        settings, freeze_gc=True, metrics_dir=Path(metrics_dir) if metrics_dir else None
    )
    configure_logging(settings)  # after the app, which sets up logging of its own
    return app
