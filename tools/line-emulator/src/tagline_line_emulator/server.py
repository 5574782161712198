"""Running the emulator over real HTTP: :func:`serve` inside the current event loop (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn

from tagline_line_emulator.app import EmulatorApp, create_app
from tagline_line_emulator.emulator import Emulator


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    emulator: Emulator
    app: EmulatorApp
    host: str
    port: int

    @property
    def url(self) -> str:
        """The LINE base URL (``Configuration(host=running.url)``); the control API is at ``/_emulator``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: EmulatorApp, host: str, port: int, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # leave the process's logging set-up alone
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
        backlog=4096,
    )


@asynccontextmanager
async def serve(
    emulator: Emulator, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> AsyncIterator[RunningEmulator]:
    """``async with serve(emu) as running:`` a uvicorn server for ``emu`` in this event loop, on ``port``
    (0: a free one). On exit pending fault sleeps end at once and open connections are closed."""
    app = create_app(emulator)
    sock = bind_socket(host, port)
    config = uvicorn_config(app, host, sock.getsockname()[1], log_level)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup(sockets=[sock])
        yield RunningEmulator(emulator, app, host, sock.getsockname()[1])
    finally:
        app.close()
        await _stop(server)
        sock.close()


async def _stop(server: uvicorn.Server, grace_s: float = 2.0) -> None:
    """uvicorn's shutdown without its fixed 0.1 s pauses: stop listening, finish in-flight requests, close."""
    for listener in getattr(server, "servers", []):
        listener.close()
    state = server.server_state
    for connection in list(state.connections):
        connection.shutdown()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while (state.tasks or state.connections) and loop.time() < deadline:  # noqa: ASYNC110 (uvicorn's state)
        await asyncio.sleep(0.005)
    for task in list(state.tasks):
        task.cancel()
    for connection in list(state.connections):
        transport = getattr(connection, "transport", None)
        if transport is not None:
            transport.close()
