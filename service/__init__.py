"""Async Quart rewrite of the Flask users/auth/posts JSON API."""

from service.app import create_app

__all__ = ["create_app"]
