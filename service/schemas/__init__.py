"""Marshmallow schemas: what comes in, what goes out."""
