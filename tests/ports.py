"""Free loopback ports: a leaf module, so that the backends, the servers they
start and the suite's helpers can all import it without importing each other."""

import socket


def free_port() -> int:
    """A loopback port free now (servers that cannot be given port 0 take it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def free_port_on_every_loopback() -> int:
    """A TCP port free on 0.0.0.0, hence on every 127.0.0.x address."""
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))  # noqa: S104 (bound only to pick a port)
        port: int = probe.getsockname()[1]
    return port
