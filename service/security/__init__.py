"""Primitives with no I/O of their own: JWTs, password hashing, the CPU share."""
