"""The sender's HTTP surface: what happened to sends, the quota ledger, cost estimates, health and metrics."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from tagline_contracts.sending import SendMessages, UserTarget
from tagline_platform.http_api import NOT_FOUND
from tagline_platform.readiness import add_readyz
from tagline_sender.domain.delivery import DeliveryState, ReplyFallback
from tagline_sender.domain.planning import InvalidRequest, reply_is_fresh
from tagline_sender.domain.pricing import Plan, charge
from tagline_sender.domain.quota import UNLIMITED, required_remaining
from tagline_sender.service import SenderService
from tagline_sender.settings import ChannelConfig


class SendListState(StrEnum):
    """``GET /sends?state=``: the send's own state (planning | planned) or a state one of its deliveries is
    in now (the keys of ``deliveries`` in ``GET /sends/{channel}/{key}``)."""

    PLANNING = "planning"
    PLANNED = "planned"
    PENDING = DeliveryState.PENDING.value
    SENDING = DeliveryState.SENDING.value
    SENT = DeliveryState.SENT.value
    DEFERRED = DeliveryState.DEFERRED.value
    FAILED = DeliveryState.FAILED.value


class IfReplyFails(BaseModel):
    """A request with a reply token: what happens, and costs, if the token is stale or refused when tried."""

    reply_fallback: ReplyFallback = Field(description="the channel's setting")
    method: str = Field(description="push, or none (dropped: a failed result, nothing sent)")
    billable_messages: int
    cost_ntd: float


class Estimate(BaseModel):
    channel_id: str
    plan: str
    method: str = Field(description="reply | push | multicast | none (a stale reply token, dropped)")
    recipients: int
    billable_messages: int
    free_messages: int
    extra_messages: int
    beyond_plan: int
    cost_ntd: float
    month: str
    used_this_month: int
    remaining_this_month: int | None
    would_defer: bool
    reply_fallback: ReplyFallback = Field(
        description="the channel's rule for a stale or refused reply token: drop (free) or push (billable)"
    )
    if_reply_fails: IfReplyFails | None = Field(
        default=None, description="with a reply token: what a stale or refused token would lead to"
    )


class Ledger(BaseModel):
    channel_id: str
    month: str
    limit: int | None
    used: int
    reserved: int
    external: int
    remaining: int | None
    marketing_headroom: int
    deferred_deliveries: int


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(doc)
    doc.pop("request", None)
    return doc


def _method(
    config: ChannelConfig, request: SendMessages, recipients: int, plan: Plan, used: int, *, fresh: bool
) -> tuple[str, int, IfReplyFails | None]:
    """How the request would be sent now, its billable messages, and what a failing reply token would do."""
    if_fails = None
    if request.reply is not None:
        pushed = config.reply_fallback is ReplyFallback.PUSH
        if_fails = IfReplyFails(
            reply_fallback=config.reply_fallback,
            method="push" if pushed else "none",
            billable_messages=recipients if pushed else 0,
            cost_ntd=float(charge(plan, used, recipients if pushed else 0).cost_ntd),
        )
    if fresh:
        return "reply", 0, if_fails
    if if_fails is not None:  # the token is stale already
        return if_fails.method, if_fails.billable_messages, if_fails
    return ("push" if recipients == 1 else "multicast"), recipients, None


def register_routes(api: FastAPI, service: SenderService) -> None:
    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    add_readyz(api, service.readiness)

    api.add_route("/metrics", service.metrics.metrics.endpoint)

    @api.get("/sends")
    async def list_sends(
        channel_id: str | None = None,
        state: SendListState | None = None,
        limit: int = Query(50, ge=1, le=500),
    ) -> list[dict[str, Any]]:
        """Recent send requests, newest first.

        ``state`` agrees with ``GET /sends/{channel}/{key}``: ``planning`` / ``planned`` match the send's own
        ``state``; a delivery state (pending, sending, sent, deferred, failed) lists every send with at least
        one delivery in that state now, so a send is listed under each state its ``deliveries`` show.

        An admin listing, not a hot path: it walks the days with sends newest first (see the store)."""
        if state in {SendListState.PLANNING, SendListState.PLANNED, None}:
            found = await service.store.list_sends(channel_id, state.value if state else None, limit)
        else:
            found = await service.store.sends_with_deliveries_in(
                channel_id, DeliveryState(state.value), limit
            )
        return [_clean(d) for d in found]

    @api.get("/sends/{channel_id}/{key}", responses=NOT_FOUND)
    async def get_send(channel_id: str, key: str) -> dict[str, Any]:
        """One request: its deliveries summed up by state (recipients and LINE calls)."""
        send = await service.store.get_send(f"{channel_id}:{key}")
        if send is None:
            raise HTTPException(404, f"no send with idempotency key {key!r} on channel {channel_id!r}")
        summary = await service.store.delivery_summary(send["_id"])
        return {**_clean(send), "request": send["request"], "deliveries": summary}

    @api.get("/channels/{channel_id}/quota", responses=NOT_FOUND)
    async def quota(channel_id: str) -> Ledger:
        if channel_id not in service.channels:
            raise HTTPException(404, f"channel {channel_id!r} is not configured")
        doc = await service.quota.ledger(channel_id, service.clock())
        limited = doc["limit"] < UNLIMITED
        return Ledger(
            channel_id=channel_id,
            month=doc["month"],
            limit=doc["limit"] if limited else None,
            used=doc["used"],
            reserved=doc["reserved"],
            external=doc["external"],
            remaining=doc["remaining"] if limited else None,
            marketing_headroom=service.quota.headroom(channel_id, doc["limit"]),
            deferred_deliveries=await service.store.deferred_count(channel_id),
        )

    @api.post("/channels/{channel_id}/estimate")
    async def estimate(channel_id: str, request: SendMessages) -> Estimate:
        """What the request would consume and cost now, before anything is sent."""
        try:
            service.planner.check(channel_id, request)
        except InvalidRequest as exc:
            raise HTTPException(422, str(exc)) from exc
        now = service.clock()
        config = service.channels[channel_id]
        recipients = await service.planner.recipients(channel_id, request, now)
        reply = isinstance(request.target, UserTarget) and reply_is_fresh(
            request, now, timedelta(seconds=service.settings.reply_token_ttl_s)
        )
        doc = await service.quota.ledger(channel_id, now)
        used = doc["used"] + doc["reserved"] + doc["external"]
        plan = service.plans[config.plan]
        method, billable, if_fails = _method(config, request, len(recipients), plan, used, fresh=reply)
        price = charge(plan, used, billable)
        limited = doc["limit"] < UNLIMITED
        need = required_remaining(
            billable, request.category, service.quota.headroom(channel_id, doc["limit"])
        )
        return Estimate(
            channel_id=channel_id,
            plan=plan.name.value,
            method=method,
            recipients=len(recipients),
            billable_messages=billable,
            free_messages=price.free,
            extra_messages=price.extra,
            beyond_plan=price.beyond_plan,
            cost_ntd=float(price.cost_ntd),
            month=doc["month"],
            used_this_month=used,
            remaining_this_month=doc["remaining"] if limited else None,
            would_defer=billable > 0 and doc["remaining"] < need,
            reply_fallback=config.reply_fallback,
            if_reply_fails=if_fails,
        )
