"""Composition root: ``create_app(settings)`` wires the tagger service and its HTTP API (no I/O at import)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI

from tagline_platform.http_api import setup_errors
from tagline_platform.readiness import start_in_background
from tagline_platform.tasks import utc_now
from tagline_tagger.api import register_routes
from tagline_tagger.service import TaggerService
from tagline_tagger.settings import TaggerSettings


def create_app(settings: TaggerSettings, *, clock: Callable[[], datetime] = utc_now) -> FastAPI:
    service = TaggerService(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with start_in_background(service.readiness, service.start, service.stop):
            yield

    api = FastAPI(title="Tagline tagger", version="0.1.0", lifespan=lifespan)
    api.state.service = service
    register_routes(api, service)
    setup_errors(api)
    return api
