"""Whether a TCP port on this machine is taken: a printed server command should work when run."""

from __future__ import annotations

import socket

# How long a connection attempt to a local port may take: a free port refuses at once.
CONNECT_SECONDS = 0.2


def in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_SECONDS)
        return sock.connect_ex((host, port)) == 0
