"""Jetstack Gateway's composition root: settings, app factory, lifespan, CLI."""

from gateway.app import create_app
from gateway.settings import Settings

__all__ = ["Settings", "create_app"]
