"""Composition root: ``create_app(settings)`` wires the sender service and its HTTP API (no I/O at import)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from tagline_platform.http_api import setup_errors
from tagline_platform.readiness import start_in_background
from tagline_platform.tasks import utc_now
from tagline_sender.api import register_routes
from tagline_sender.journeys_api import register_journey_routes
from tagline_sender.ports import LineGateway
from tagline_sender.service import SenderService
from tagline_sender.settings import SenderSettings


def create_app(
    settings: SenderSettings, *, clock: Callable[[], datetime] = utc_now, line: LineGateway | None = None
) -> FastAPI:
    service = SenderService(settings, clock=clock, line=line)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with start_in_background(service.readiness, service.start, service.stop):
            yield

    api = FastAPI(title="Tagline sender", version="0.1.0", lifespan=lifespan)
    api.state.service = service
    register_routes(api, service)
    register_journey_routes(api, service)
    setup_errors(api)
    return api
