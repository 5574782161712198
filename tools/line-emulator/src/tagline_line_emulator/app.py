"""The HTTP face of the emulator: a bare ASGI app for the LINE endpoints, FastAPI for ``/_emulator/``.

The LINE endpoints are the benchmark's hot path (thousands of requests a second), so they skip a framework:
route by exact path, read the body, let :class:`~tagline_line_emulator.emulator.Emulator` decide, write JSON.
Fault kinds that sleep race the sleep against the client going away and against the app closing, so a
test's timed-out client or a server shutdown never waits for a 30 s fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from tagline_line_emulator import endpoints as ep
from tagline_line_emulator.control import create_control_app
from tagline_line_emulator.emulator import GATEWAY_TIMEOUT, INTERNAL_ERROR, NOT_FOUND, Answer, Call, Emulator

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/_emulator"
PROBES = frozenset({"/healthz", "/readyz"})
"""Answered by the control app, like every Tagline service's probes (``make run`` waits on ``/readyz``)."""
_KNOWN_PATHS = {path for _, path in ep.ROUTES}


def encode_json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


async def send_json(
    send: Send, status: int, body: Any, request_id: str, headers: tuple[tuple[str, str], ...] = ()
) -> None:
    payload = encode_json(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"x-line-request-id", request_id.encode()),
    ]
    raw_headers.extend((name.lower().encode(), value.encode()) for name, value in headers)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def drop_connection(send: Send) -> None:
    """Close the connection without writing a byte of response, as a crashed or unreachable server would.

    Under uvicorn ``send`` is a method of the request's cycle, which holds the transport: abort it, then
    give the event loop a few turns so uvicorn marks the cycle disconnected (and does not answer 500 when
    the app returns). Elsewhere, fall back to starting a response that never completes: the server then
    closes the connection mid-body (weaker: the client has seen a status line).
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()
        for _ in range(20):
            await asyncio.sleep(0)
            if getattr(cycle, "disconnected", True):
                return
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1048576")]}
    )  # pragma: no cover (only without uvicorn)


class EmulatorApp:
    """``create_app(emulator)``: the ASGI application."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.control: ASGIApp = create_control_app(emulator)
        self._closing: asyncio.Event | None = None

    def close(self) -> None:
        """End every pending fault sleep now (server shutdown)."""
        self._closing_event().set()

    def _closing_event(self) -> asyncio.Event:
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.control(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        endpoint = ep.ROUTES.get((method, path))
        user_id: str | None = None
        if endpoint is None:
            if path.startswith(ep.PROFILE_PREFIX) and method == "GET":
                endpoint, user_id = ep.PROFILE, path.removeprefix(ep.PROFILE_PREFIX)
            elif path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/") or path in PROBES:
                await self.control(scope, receive, send)
                return
            else:
                await read_body(receive)
                status = 405 if path in _KNOWN_PATHS else 404
                message = "Method not allowed" if status == 405 else NOT_FOUND
                await send_json(send, status, {"message": message}, str(uuid.uuid4()))
                return
        await self._line(endpoint, user_id, scope, receive, send)

    async def _line(
        self, endpoint: str, user_id: str | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        body = await read_body(receive)
        if body is None:
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in (b"authorization", b"x-line-retry-key", b"idempotency-key"):
                headers[name] = value
        query: dict[str, str] = {}
        if endpoint == ep.NARROWCAST_PROGRESS:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        call = Call(
            endpoint=endpoint,
            authorization=_text(headers.get(b"authorization")),
            body=body,
            retry_key=_text(headers.get(b"x-line-retry-key")),
            idempotency_key=_text(headers.get(b"idempotency-key")),
            user_id=user_id,
            query=query,
        )
        emulator = self.emulator
        exchange = emulator.begin(call)
        fault = exchange.fault
        answer: Answer
        if exchange.answer is not None:
            answer = exchange.answer
        elif fault is None:
            answer = emulator.execute(exchange)
        elif fault.kind == "error":
            answer = emulator.refuse(exchange, fault.status, INTERNAL_ERROR)
        elif fault.kind == "latency":  # the request reaches LINE late, even if the client gave up meanwhile
            await self._pause(fault.delay, receive, watch_client=False)
            answer = emulator.execute(exchange)
        elif fault.kind == "timeout":
            await self._pause(fault.delay, receive)
            answer = emulator.refuse(exchange, 504, GATEWAY_TIMEOUT)
        elif fault.kind == "timeout_after_accept":
            answer = emulator.execute(exchange)
            await self._pause(fault.delay, receive)
        elif fault.kind == "drop":
            emulator.mark_dropped(exchange)
            await drop_connection(send)
            return
        else:  # drop_after_accept
            emulator.execute(exchange)
            emulator.mark_dropped(exchange)
            await drop_connection(send)
            return
        await send_json(send, answer.status, answer.body, exchange.request_id, answer.headers)

    async def _pause(self, delay: float, receive: Receive, *, watch_client: bool = True) -> None:
        """Sleep ``delay`` seconds, or less if the app closes or (``watch_client``) the client goes away."""
        closing = self._closing_event()
        if delay <= 0 or closing.is_set():
            return

        async def client_gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        waiters = {
            asyncio.ensure_future(asyncio.sleep(delay)),
            asyncio.ensure_future(closing.wait()),
        }
        if watch_client:
            waiters.add(asyncio.ensure_future(client_gone()))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            for waiter in waiters:
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def create_app(emulator: Emulator) -> EmulatorApp:
    """The ASGI app for ``emulator``: LINE endpoints, the points API and the ``/_emulator`` control API."""
    return EmulatorApp(emulator)
