"""The tagger's HTTP API: rules, members (manual tags), segments, tag coverage, RFM, health and metrics.

Every path under ``/channels/{channel_id}`` answers 404 for a channel the tagger does not serve
(``TAGLINE_TAGGER_CHANNELS``), so a mistyped channel id creates nothing.

Manual tags are not written here: they are published to ``member.attributes.v1`` like any other producer's,
so the member's owning pipeline instance applies them (the single-writer rule; the answer is 202). Tagging
a member Tagline has never seen is a 404 unless the caller asks for it with ``?create=true`` (a friend from
before Tagline, known by their userId): a mistyped userId must not create a member.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from ulid import ULID

from tagline_contracts import topics
from tagline_contracts.attributes import MemberUpdated, MemberUpdatedEvent, TagGrant, TagName, TagOrigin
from tagline_contracts.envelope import new_event_id
from tagline_contracts.segments import (
    SEGMENT_FILTER,
    SegmentFilter,
    filter_depth,
    filter_size,
    to_mongo_query,
)
from tagline_platform.http_api import NOT_FOUND
from tagline_platform.kafka import Outgoing
from tagline_platform.readiness import add_readyz
from tagline_tagger.domain.member import member_key
from tagline_tagger.domain.rules import Rule, RuleSpec
from tagline_tagger.jobs import compute_coverage, publish_coverage, rule_from_doc, rule_to_doc

if TYPE_CHECKING:
    from tagline_tagger.service import TaggerService

MAX_PAGE = 1_000
SEGMENT_VIEW = {
    "_id": 0,
    "user_id": 1,
    "follow_state": 1,
    "tags": 1,
    "attributes": 1,
    "last_interaction_at": 1,
    "rfm_segment": 1,
    "display_name": 1,
}


class TagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TagName
    origin: TagOrigin = TagOrigin.MANUAL
    expires_at: AwareDatetime | None = None


class SegmentPage(BaseModel):
    members: list[dict[str, Any]]
    next_after: str | None = Field(description="pass as ?after= for the next page; null on the last page")


def _not_found(what: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{what} not found")


def _served(request: Request, channel_id: str) -> str:
    """The path's channel, if this tagger serves it (``TaggerService.channels``); else 404 naming it."""
    if channel_id not in request.app.state.service.channels:
        raise HTTPException(
            status_code=404,
            detail=f"channel {channel_id} not found: it is not one of this tagger's channels "
            "(TAGLINE_TAGGER_CHANNELS)",
        )
    return channel_id


Channel = Annotated[str, Depends(_served)]
"""A ``channel_id`` path parameter the tagger serves."""


def register_routes(api: FastAPI, service: TaggerService) -> None:  # noqa: PLR0915 - one function, every route
    store = service.store

    # ---- rules -----------------------------------------------------------------------------------------
    @api.post("/channels/{channel_id}/rules", status_code=201, tags=["rules"], responses=NOT_FOUND)
    async def create_rule(channel_id: Channel, spec: RuleSpec) -> Rule:
        now = datetime.now(UTC)
        rule = Rule(
            **spec.model_dump(),
            id=str(ULID()),
            channel_id=channel_id,
            version=1,
            created_at=now,
            updated_at=now,
        )
        await store.insert_rule(rule_to_doc(rule))
        return rule

    @api.get("/channels/{channel_id}/rules", tags=["rules"], responses=NOT_FOUND)
    async def list_rules(channel_id: Channel) -> list[Rule]:
        return [Rule.model_validate(rule_from_doc(doc)) for doc in await store.all_rules(channel_id)]

    async def _rule(rule_id: str) -> Rule:
        doc = await store.get_rule(rule_id)
        if doc is None:
            raise _not_found(f"rule {rule_id}")
        return Rule.model_validate(rule_from_doc(doc))

    @api.get("/rules/{rule_id}", tags=["rules"], responses=NOT_FOUND)
    async def get_rule(rule_id: str) -> Rule:
        return await _rule(rule_id)

    async def _save(rule: Rule, changes: dict[str, Any]) -> Rule:
        updated = Rule.model_validate(
            {**rule.model_dump(), **changes, "version": rule.version + 1, "updated_at": datetime.now(UTC)}
        )
        if not await store.replace_rule(rule_to_doc(updated)):
            raise _not_found(f"rule {rule.id}")
        return updated

    @api.put("/rules/{rule_id}", tags=["rules"], responses=NOT_FOUND)
    async def update_rule(rule_id: str, spec: RuleSpec) -> Rule:
        return await _save(await _rule(rule_id), spec.model_dump())

    @api.post("/rules/{rule_id}/disable", tags=["rules"], responses=NOT_FOUND)
    async def disable_rule(rule_id: str) -> Rule:
        return await _save(await _rule(rule_id), {"enabled": False})

    @api.post("/rules/{rule_id}/enable", tags=["rules"], responses=NOT_FOUND)
    async def enable_rule(rule_id: str) -> Rule:
        return await _save(await _rule(rule_id), {"enabled": True})

    @api.delete("/rules/{rule_id}", status_code=204, tags=["rules"], responses=NOT_FOUND)
    async def delete_rule(rule_id: str) -> Response:
        if not await store.delete_rule(rule_id):
            raise _not_found(f"rule {rule_id}")
        return Response(status_code=204)

    # ---- members ---------------------------------------------------------------------------------------
    @api.get("/channels/{channel_id}/members/{user_id}", tags=["members"], responses=NOT_FOUND)
    async def get_member(channel_id: Channel, user_id: str) -> dict[str, Any]:
        doc = await store.get_member(channel_id, user_id)
        if doc is None:
            raise _not_found(f"member {user_id} of channel {channel_id}")
        doc.pop("_id", None)
        return doc

    async def _publish_update(channel_id: str, update: MemberUpdated) -> dict[str, str]:
        now = datetime.now(UTC)
        envelope = MemberUpdatedEvent(
            event_id=new_event_id(), channel_id=channel_id, occurred_at=now, produced_at=now, payload=update
        )
        key = member_key(channel_id, update.user_id)
        await service.publish_all(
            [Outgoing.of(service.settings.topic(topics.MEMBER_ATTRIBUTES), key, envelope)]
        )
        return {"event_id": envelope.event_id, "status": "accepted"}

    async def _known_member(channel_id: str, user_id: str) -> None:
        if not await store.member_exists(channel_id, user_id):
            raise HTTPException(
                status_code=404,
                detail=f"member {user_id} of channel {channel_id} not found: Tagline has no event or import "
                "for this userId. To tag a friend it has not seen yet (known from LINE's follower list or "
                "your CRM), send the request again with ?create=true",
            )

    @api.post(
        "/channels/{channel_id}/members/{user_id}/tags",
        status_code=202,
        tags=["members"],
        responses=NOT_FOUND,
    )
    async def add_tag(
        channel_id: Channel,
        user_id: str,
        tag: TagRequest,
        create: Annotated[
            bool,
            Query(
                description="tag the userId even if Tagline has never seen it: the member is created with an "
                "unknown follow state (a friend from before Tagline); without it an unknown member is a 404"
            ),
        ] = False,
    ) -> dict[str, str]:
        if tag.origin not in (TagOrigin.MANUAL, TagOrigin.IMPORT):
            raise HTTPException(status_code=422, detail="origin must be manual or import")
        grant = TagGrant(name=tag.name, origin=tag.origin, expires_at=tag.expires_at)
        try:
            update = MemberUpdated(user_id=user_id, tags_add=[grant])
        except ValidationError as exc:  # the user id (over 100 characters): was a 500
            raise HTTPException(
                status_code=422, detail=exc.errors(include_url=False, include_context=False)
            ) from exc
        if not create:
            await _known_member(channel_id, user_id)
        return await _publish_update(channel_id, update)

    @api.delete(
        "/channels/{channel_id}/members/{user_id}/tags/{name}",
        status_code=202,
        tags=["members"],
        responses=NOT_FOUND,
    )
    async def remove_tag(channel_id: Channel, user_id: str, name: str) -> dict[str, str]:
        try:
            update = MemberUpdated(user_id=user_id, tags_remove=[name])
        except ValidationError as exc:
            raise HTTPException(
                status_code=422, detail=exc.errors(include_url=False, include_context=False)
            ) from exc
        await _known_member(channel_id, user_id)
        return await _publish_update(channel_id, update)

    # ---- segments --------------------------------------------------------------------------------------
    def _parse(raw: Any) -> SegmentFilter:
        try:
            return SEGMENT_FILTER.validate_python(raw)
        except ValidationError as exc:
            raise HTTPException(
                status_code=422, detail=exc.errors(include_url=False, include_context=False)
            ) from exc

    def _query(segment: SegmentFilter) -> dict[str, Any]:
        now = datetime.now(UTC)
        return to_mongo_query(segment, now=now, today=date.today())

    @api.post("/channels/{channel_id}/segments/validate", tags=["segments"], responses=NOT_FOUND)
    async def validate_segment(channel_id: Channel, raw: Annotated[Any, Body()]) -> dict[str, Any]:
        try:
            segment = SEGMENT_FILTER.validate_python(raw)
        except ValidationError as exc:
            return {"valid": False, "errors": exc.errors(include_url=False, include_context=False)}
        return {
            "valid": True,
            "filter": SEGMENT_FILTER.dump_python(segment, mode="json"),
            "depth": filter_depth(segment),
            "conditions": filter_size(segment),
        }

    @api.post("/channels/{channel_id}/segments/count", tags=["segments"], responses=NOT_FOUND)
    async def count_segment(channel_id: Channel, raw: Annotated[Any, Body()]) -> dict[str, Any]:
        segment = _parse(raw)
        return {"channel_id": channel_id, "count": await store.count_members(channel_id, _query(segment))}

    @api.post("/channels/{channel_id}/segments/members", tags=["segments"], responses=NOT_FOUND)
    async def segment_members(
        channel_id: Channel,
        raw: Annotated[Any, Body()],
        after: Annotated[str | None, Query(description="the last user id of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> SegmentPage:
        segment = _parse(raw)
        docs = await store.find_members(
            channel_id, _query(segment), after=after, limit=limit, fields=SEGMENT_VIEW
        )
        return SegmentPage(members=docs, next_after=docs[-1]["user_id"] if len(docs) == limit else None)

    # ---- coverage and RFM ------------------------------------------------------------------------------
    @api.get("/channels/{channel_id}/coverage", tags=["coverage"], responses=NOT_FOUND)
    async def coverage(channel_id: Channel) -> dict[str, Any]:
        result = await compute_coverage(store, channel_id, datetime.now(UTC))
        publish_coverage(service.metrics, result)
        return result.to_json()

    @api.post("/channels/{channel_id}/rfm/recompute", tags=["rfm"], responses=NOT_FOUND)
    async def recompute_rfm(channel_id: Channel) -> dict[str, Any]:
        run = await service.rfm.recompute(channel_id, service.clock())
        return {
            "channel_id": channel_id,
            "model": run.model.to_doc() | {"computed_at": run.model.computed_at.isoformat()},
            "buyers": run.buyers,
            "changed": run.changed,
            "seconds": round(run.seconds, 3),
            "scan_seconds": round(run.scan_seconds, 3),
            "segments": run.segments,
        }

    @api.get("/channels/{channel_id}/rfm", tags=["rfm"], responses=NOT_FOUND)
    async def rfm_model(channel_id: Channel) -> dict[str, Any]:
        model = service.models.get(channel_id)
        if model is None:
            raise _not_found(f"RFM model of channel {channel_id} (POST .../rfm/recompute)")
        return model.to_doc() | {"computed_at": model.computed_at.isoformat()}

    # ---- operations ------------------------------------------------------------------------------------
    @api.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    add_readyz(
        api,
        service.readiness,
        lambda: {"rules": len(service.rules.current()), "cached_members": len(service.pipeline.cache)},
        tags=["ops"],
    )

    api.add_route("/metrics", service.metrics.metrics.endpoint, methods=["GET"])
