"""The control API under ``/_emulator/``: the Python API over HTTP, for out-of-process users.

No authentication: the emulator only ever runs on loopback or inside a test network. Bodies and answers use
camelCase like LINE's (``userIds``, ``windowS``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from tagline_line_emulator.emulator import Emulator
from tagline_line_emulator.endpoints import ENDPOINTS
from tagline_line_emulator.faults import Fault, FaultKind


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class QuotaBody(_Body):
    type: Literal["none", "limited"]
    value: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _value_when_limited(self) -> QuotaBody:
        if self.type == "limited" and self.value is None:
            raise ValueError('"limited" needs a "value"')
        return self


class UsageBody(_Body):
    total_usage: int = Field(ge=0)


class UserIdsBody(_Body):
    user_ids: list[str]


class ReplyTokenBody(_Body):
    user_id: str = Field(min_length=1)
    token: str | None = Field(default=None, min_length=1)


class RateLimitBody(_Body):
    limit: int = Field(ge=0)
    window_s: float = Field(gt=0)


class FaultBody(_Body):
    endpoint: str = "*"
    kind: FaultKind = "error"
    status: int = 500
    delay_s: float | None = None
    times: int | None = None
    probability: float | None = None
    duration_s: float | None = None


def _bad_request(exc: Exception) -> HTTPException:
    return HTTPException(status_code=422, detail=str(exc))


def create_control_app(emulator: Emulator) -> FastAPI:  # noqa: PLR0915 - one short route per emulator feature
    emu = emulator

    def known_channel(request: Request) -> None:
        """Channels are keyed by channel id only: an access token or a typo in a path is a 404, not an empty
        answer about a channel that does not exist."""
        channel = request.path_params.get("channel")
        if channel is not None and not emu.knows(channel):
            known = sorted(emu.config.channels or ())
            raise HTTPException(
                status_code=404,
                detail=f"no channel {channel!r}: the channels are {known} (a channel is named by its id, "
                "not by its access token)",
            )

    app = FastAPI(
        title="LINE emulator control API",
        docs_url="/_emulator/docs",
        openapi_url="/_emulator/openapi.json",
        redoc_url=None,
        dependencies=[Depends(known_channel)],
    )
    prefix = "/_emulator"

    @app.get(prefix + "/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness, as every Tagline service answers it."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        """Readiness: the emulator depends on nothing, so it is ready once it answers (its spec is loaded)."""
        return {"status": "ready"}

    @app.post(prefix + "/reset")
    async def reset() -> dict[str, Any]:
        emu.reset()
        return {"ok": True}

    # --- channels -------------------------------------------------------------------------------------------

    @app.get(prefix + "/channels/{channel}")
    async def channel_state(channel: str) -> dict[str, Any]:
        limit = emu.quota(channel)
        return {
            "channel": channel,
            "quota": {"type": "none"} if limit is None else {"type": "limited", "value": limit},
            "totalUsage": emu.usage(channel),
            "blocked": sorted(emu.blocked(channel)),
            "friends": len(emu.friends(channel)),
        }

    @app.put(prefix + "/channels/{channel}/quota")
    async def set_quota(channel: str, body: QuotaBody) -> dict[str, Any]:
        emu.set_quota(channel, body.value if body.type == "limited" else None)
        return body.model_dump(by_alias=True, exclude_none=True)

    @app.get(prefix + "/channels/{channel}/usage")
    async def get_usage(channel: str) -> dict[str, Any]:
        return {"totalUsage": emu.usage(channel)}

    @app.put(prefix + "/channels/{channel}/usage")
    async def set_usage(channel: str, body: UsageBody) -> dict[str, Any]:
        emu.set_usage(channel, body.total_usage)
        return {"totalUsage": emu.usage(channel)}

    @app.post(prefix + "/channels/{channel}/block")
    async def block(channel: str, body: UserIdsBody) -> dict[str, Any]:
        emu.block(channel, *body.user_ids)
        return {"blocked": sorted(emu.blocked(channel))}

    @app.post(prefix + "/channels/{channel}/unblock")
    async def unblock(channel: str, body: UserIdsBody) -> dict[str, Any]:
        emu.unblock(channel, *body.user_ids)
        return {"blocked": sorted(emu.blocked(channel))}

    @app.get(prefix + "/channels/{channel}/blocked")
    async def blocked(channel: str) -> dict[str, Any]:
        return {"blocked": sorted(emu.blocked(channel))}

    @app.put(prefix + "/channels/{channel}/friends")
    async def set_friends(channel: str, body: UserIdsBody) -> dict[str, Any]:
        emu.set_friends(channel, body.user_ids)
        return {"friends": len(emu.friends(channel))}

    @app.get(prefix + "/channels/{channel}/friends")
    async def friends(channel: str) -> dict[str, Any]:
        return {"userIds": list(emu.friends(channel))}

    @app.post(prefix + "/channels/{channel}/reply-tokens")
    async def issue_reply_token(channel: str, body: ReplyTokenBody) -> dict[str, Any]:
        return {"replyToken": emu.issue_reply_token(channel, body.user_id, body.token)}

    # --- rate limits and faults ---------------------------------------------------------------------------

    @app.get(prefix + "/rate-limits")
    async def rate_limits() -> dict[str, Any]:
        return {name: {"limit": r.limit, "windowS": r.window_s} for name, r in emu.rate_limits().items()}

    @app.put(prefix + "/rate-limits/{endpoint}")
    async def set_rate_limit(endpoint: str, body: RateLimitBody) -> dict[str, Any]:
        try:
            emu.set_rate_limit(endpoint, body.limit, body.window_s)
        except ValueError as exc:
            raise _bad_request(exc) from None
        return {"endpoint": endpoint, "limit": body.limit, "windowS": body.window_s}

    @app.get(prefix + "/faults")
    async def faults() -> dict[str, Any]:
        return {"faults": [f.to_json() for f in emu.faults()]}

    @app.post(prefix + "/faults", status_code=201)
    async def inject(body: FaultBody) -> dict[str, Any]:
        try:
            fault = Fault(**body.model_dump())
        except (ValueError, ValidationError) as exc:
            raise _bad_request(exc) from None
        emu.inject(fault)
        return fault.to_json()

    @app.delete(prefix + "/faults")
    async def clear_faults() -> dict[str, Any]:
        emu.clear_faults()
        return {"faults": []}

    # --- inspection ----------------------------------------------------------------------------------------

    @app.get(prefix + "/requests")
    async def requests(
        endpoint: str | None = None,
        channel: str | None = None,
        status: int | None = None,
        limit: int = Query(default=100, ge=0),
        recipients: bool = False,
    ) -> dict[str, Any]:
        found = [r for r in emu.requests(endpoint, channel) if status is None or r.status == status]
        shown = found[-limit:] if limit else []
        return {"total": len(found), "requests": [r.to_json(with_recipients=recipients) for r in shown]}

    @app.get(prefix + "/channels/{channel}/deliveries")
    async def deliveries(channel: str) -> dict[str, Any]:
        per_user = emu.deliveries(channel)
        return {"recipients": len(per_user), "messages": sum(per_user.values()), "deliveries": per_user}

    @app.get(prefix + "/channels/{channel}/duplicates")
    async def duplicates(channel: str) -> dict[str, Any]:
        found = emu.duplicates(channel)
        return {
            "duplicates": [
                {"userId": user, "fingerprint": fp, "count": n} for (user, fp), n in sorted(found.items())
            ]
        }

    @app.get(prefix + "/channels/{channel}/received/{user_id}")
    async def received(channel: str, user_id: str) -> dict[str, Any]:
        """What one recipient was delivered: each distinct message list (its texts) and how many times."""
        found = emu.received(channel, user_id)
        return {
            "userId": user_id,
            "received": [{"messages": m, "count": n} for m, n in sorted(found.items())],
        }

    @app.get(prefix + "/channels/{channel}/blocked-attempts")
    async def blocked_attempts(channel: str) -> dict[str, Any]:
        return {"blockedAttempts": emu.blocked_attempts(channel)}

    @app.get(prefix + "/stats")
    async def stats(
        channel: str | None = None, window_s: float = Query(default=1.0, gt=0, alias="windowS")
    ) -> dict[str, Any]:
        counts = Counter((r.endpoint, r.status) for r in emu.requests(channel=channel))
        used = sorted({endpoint for endpoint, _ in counts})
        return {
            "counts": [
                {"endpoint": endpoint, "status": status, "count": n}
                for (endpoint, status), n in sorted(
                    counts.items(), key=lambda item: (item[0][0], item[0][1] or 0)
                )
            ],
            "maxInWindow": {e: emu.max_in_window(e, channel, window_s) for e in used},
            "maxAcceptedInWindow": {
                e: emu.max_in_window(e, channel, window_s, accepted_only=True) for e in used
            },
            "windowS": window_s,
            "endpoints": list(ENDPOINTS),
        }

    @app.get(prefix + "/channels/{channel}/points")
    async def points(channel: str) -> dict[str, Any]:
        return {"grants": emu.points_grants(channel)}

    @app.get(prefix + "/channels/{channel}/points/{user_id}")
    async def points_balance(channel: str, user_id: str) -> dict[str, Any]:
        return {"channelId": channel, "userId": user_id, "balance": emu.points_balance(channel, user_id)}

    return app
