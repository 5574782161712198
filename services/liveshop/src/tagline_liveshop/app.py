"""Composition root: ``create_app(settings)`` wires the liveshop service and its HTTP API and its API.

No I/O at import."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from tagline_liveshop.api import register_routes
from tagline_liveshop.service import LiveshopService
from tagline_liveshop.settings import LiveshopSettings
from tagline_platform.http_api import setup_errors
from tagline_platform.readiness import start_in_background
from tagline_platform.tasks import utc_now


def create_app(settings: LiveshopSettings, *, clock: Callable[[], datetime] = utc_now) -> FastAPI:
    service = LiveshopService(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with start_in_background(service.readiness, service.start, service.stop):
            yield

    api = FastAPI(title="Tagline liveshop", version="0.1.0", lifespan=lifespan)
    api.state.service = service
    register_routes(api, service)
    setup_errors(api)
    return api
