"""Process helpers for benchmarks: free ports, who listens where, CPU seconds used."""

from __future__ import annotations

import contextlib
import socket

import psutil


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def listener_pid(address: str) -> int | None:
    """The process listening on the port of ``host:port[,…]`` or ``mongodb://host:port/`` (or None)."""
    port = int(address.rstrip("/").split(",", maxsplit=1)[0].rpartition(":")[2])
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    return None


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (None if unknown or gone)."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system
