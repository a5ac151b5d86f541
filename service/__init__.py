"""Async Quart rewrite of the Flask users/auth/posts JSON API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazily: importing service.services (or the CLI's models) must not load
    # the web framework through this package (tests/app/test_layers.py).
    if name == "create_app":
        from service.app import create_app

        return create_app
    raise AttributeError(f"module 'service' has no attribute {name!r}")
