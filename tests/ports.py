"""Free loopback ports for the servers tests start (shared by tests/integration and tests/system)."""

from __future__ import annotations

import pathlib
import random
import socket


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range (ip_local_port_range).

    Not one the kernel picks with ``bind(0)``: that one is in the range every client
    connection takes its source port from, and under ``pytest -n`` another worker's clients
    took it before the server bound it ("Address already in use").
    """
    low = int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(10000, max(low, 10001)), min(200, max(low - 10000, 1))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # a box without room below its range: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
