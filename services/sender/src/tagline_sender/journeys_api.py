"""HTTP API of journeys (progressive messages): definitions, enable/disable, stats.

A definition is validated twice: its shape (``domain.journeys.JourneySpec``: 422 with pydantic's errors) and
the deployment's limits (steps, waits: 422 with one message per problem). Changes reach every instance's
scheduler within ``TAGLINE_SENDER_JOURNEY_REFRESH_S``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from ulid import ULID

from tagline_platform.http_api import NOT_FOUND
from tagline_sender.domain.journeys import JourneySpec, limit_errors
from tagline_sender.domain.welcome import WelcomeSpec

if TYPE_CHECKING:
    from tagline_sender.service import SenderService


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "channel_id": doc["channel_id"],
        "version": doc["version"],
        "created_at": doc["created_at"],
        "updated_at": doc["updated_at"],
        **doc["spec"],
    }


async def _save(service: SenderService, doc: dict[str, Any]) -> None:
    """Store a changed definition and tell this instance's cache. An enabled journey's members whose steps
    came due while it was disabled are looked for again once every instance has reloaded it."""
    await service.journey_store.replace_journey(doc)
    spec = JourneySpec.model_validate(doc["spec"])
    service.journey_cache.put(doc["_id"], doc["channel_id"], spec)
    if spec.enabled:
        now = service.clock()
        later = now + timedelta(seconds=2 * service.settings.journey_refresh_s)
        await service.journey_store.requeue(doc["_id"], later, now)


def register_journey_routes(api: FastAPI, service: SenderService) -> None:
    store = service.journey_store
    cache = service.journey_cache
    limits = service.settings.journey_limits()

    def checked(channel_id: str, spec: JourneySpec) -> dict[str, Any]:
        errors = limit_errors(spec, limits)
        if errors:
            raise HTTPException(status_code=422, detail=errors)
        body = spec.model_dump(mode="json")
        channel = service.channels.get(channel_id)
        if "timezone" not in spec.model_fields_set and channel is not None:
            body["timezone"] = channel.timezone  # steps are timed in the channel's timezone unless told
        return body

    async def found(journey_id: str) -> dict[str, Any]:
        doc = await store.get_journey(journey_id)
        if doc is None:
            raise HTTPException(status_code=404, detail=f"journey {journey_id} not found")
        return doc

    async def save(doc: dict[str, Any]) -> dict[str, Any]:
        await _save(service, doc)
        return _view(doc)

    @api.post("/channels/{channel_id}/journeys", status_code=201, tags=["journeys"])
    async def create_journey(channel_id: str, spec: JourneySpec) -> dict[str, Any]:
        now = datetime.now(UTC)
        doc: dict[str, Any] = {
            "_id": str(ULID()),
            "channel_id": channel_id,
            "spec": checked(channel_id, spec),
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        await store.insert_journey(doc)
        cache.put(doc["_id"], channel_id, JourneySpec.model_validate(doc["spec"]))
        return _view(doc)

    @api.get("/channels/{channel_id}/journeys", tags=["journeys"])
    async def list_journeys(channel_id: str) -> list[dict[str, Any]]:
        return [_view(doc) for doc in await store.list_journeys(channel_id)]

    @api.get("/journeys/{journey_id}", tags=["journeys"], responses=NOT_FOUND)
    async def get_journey(journey_id: str) -> dict[str, Any]:
        return _view(await found(journey_id))

    @api.put("/journeys/{journey_id}", tags=["journeys"], responses=NOT_FOUND)
    async def replace_journey(journey_id: str, spec: JourneySpec) -> dict[str, Any]:
        doc = await found(journey_id)
        body = checked(doc["channel_id"], spec)
        return await save(
            {**doc, "spec": body, "version": doc["version"] + 1, "updated_at": datetime.now(UTC)}
        )

    def toggle(enabled: bool) -> Callable[[str], Awaitable[dict[str, Any]]]:
        # A closure, not a default argument: FastAPI would make that a query parameter (?_enabled=false).
        async def set_enabled(journey_id: str) -> dict[str, Any]:
            doc = await found(journey_id)
            spec = {**doc["spec"], "enabled": enabled}
            return await save(
                {**doc, "spec": spec, "version": doc["version"] + 1, "updated_at": datetime.now(UTC)}
            )

        return set_enabled

    for action, enabled in (("enable", True), ("disable", False)):
        api.add_api_route(
            f"/journeys/{{journey_id}}/{action}",
            toggle(enabled),
            methods=["POST"],
            tags=["journeys"],
            name=action,
            responses=NOT_FOUND,
        )

    @api.delete("/journeys/{journey_id}", status_code=204, tags=["journeys"], responses=NOT_FOUND)
    async def delete_journey(journey_id: str) -> None:
        doc = await found(journey_id)
        await store.delete_journey(journey_id)
        cache.put(journey_id, doc["channel_id"], None)

    @api.put("/channels/{channel_id}/welcome", tags=["welcome"])
    async def put_welcome(channel_id: str, spec: WelcomeSpec) -> dict[str, Any]:
        body = spec.model_dump(mode="json")
        await store.put_welcome(channel_id, body)
        return {"channel_id": channel_id, **body}

    @api.get("/channels/{channel_id}/welcome", tags=["welcome"], responses=NOT_FOUND)
    async def get_welcome(channel_id: str) -> dict[str, Any]:
        doc = await store.get_welcome(channel_id)
        if doc is None:
            raise HTTPException(status_code=404, detail=f"channel {channel_id} has no welcome message")
        return {"channel_id": channel_id, **doc["spec"]}

    @api.delete("/channels/{channel_id}/welcome", status_code=204, tags=["welcome"], responses=NOT_FOUND)
    async def delete_welcome(channel_id: str) -> None:
        if not await store.delete_welcome(channel_id):
            raise HTTPException(status_code=404, detail=f"channel {channel_id} has no welcome message")

    @api.get("/journeys/{journey_id}/stats", tags=["journeys"], responses=NOT_FOUND)
    async def journey_stats(journey_id: str) -> dict[str, Any]:
        await found(journey_id)
        return await service.journeys.stats(journey_id)
