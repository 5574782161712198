"""Sender settings (env prefix ``TAGLINE_SENDER_``).

Channels come from ``TAGLINE_SENDER_CHANNELS`` (JSON) and/or ``TAGLINE_SENDER_CHANNELS_FILE`` (a path to the
same JSON, e.g. a Kubernetes secret; it wins for a channel in both)::

    {"1234567890": {"access_token": "…", "timezone": "Asia/Taipei", "plan": "high",
                    "monthly_limit": null, "marketing_headroom_ratio": 0.05, "reply_fallback": "drop"}}

``monthly_limit`` null (the default) means "ask LINE's quota endpoint"; a number overrides it.
``reply_fallback`` is what a reply whose token went stale or was refused becomes: ``drop`` (the default: it
fails with the reason, replies stay free) or ``push`` (billable; for channels whose replies must arrive, such
as liveshop's confirmations of chat orders with their checkout link).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from tagline_platform.errors import ConfigurationError
from tagline_platform.settings import ServiceSettings
from tagline_sender.domain.delivery import ReplyFallback, RetryPolicy
from tagline_sender.domain.journeys import JourneyLimits
from tagline_sender.domain.pricing import DEFAULT_PLANS, Plan, PlanName
from tagline_sender.domain.ratelimit import DEFAULT_LIMITS, RateLimit


class ChannelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    access_token: SecretStr
    timezone: str = "Asia/Taipei"
    plan: PlanName = PlanName.HIGH
    monthly_limit: int | None = Field(default=None, ge=0)
    marketing_headroom_ratio: float | None = Field(default=None, ge=0, le=1)
    reply_fallback: ReplyFallback = ReplyFallback.DROP

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class RateLimitSetting(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1)
    window_s: float = Field(gt=0)


class SenderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TAGLINE_SENDER_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=0, le=65535)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    channels_file: Path | None = None
    line_api_url: str = Field(
        default="https://api.line.me", description="LINE Messaging API base URL (the emulator locally)."
    )
    database: str = "tagline_sender"
    group_id: str = "tagline-sender"
    instance_id: str = Field(default="", description="Names this instance in leases; random when empty.")
    request_timeout_s: float = Field(default=10.0, gt=0)
    reply_token_ttl_s: float = Field(
        default=25.0,
        gt=0,
        description="Reply tokens older than this are not tried (the channel's reply_fallback applies).",
    )
    reply_gather_ms: int = Field(
        default=1_000,
        ge=0,
        le=10_000,
        description="The replies to one event are gathered into one reply call until none has arrived for "
        "this long.",
    )
    concurrency: int = Field(default=32, ge=1, description="LINE calls in flight per instance.")
    poll_interval_s: float = Field(default=2.0, gt=0)
    lease_s: float = Field(default=60.0, gt=0, description="A claimed delivery is reclaimed after this long.")
    quota_refresh_s: float = Field(default=60.0, gt=0)
    quota_gauge_refresh_s: float = Field(
        default=5.0, gt=0, description="How often the quota_remaining gauge is read from the ledgers."
    )
    consumer_lag_interval_s: float = Field(
        default=15.0, gt=0, description="How often the consumer lag on /metrics is measured."
    )
    shutdown_grace_s: float = Field(
        default=10.0, ge=0, description="On shutdown, how long LINE calls in progress may take to finish."
    )
    marketing_headroom_ratio: float = Field(
        default=0.05, ge=0, le=1, description="Share of the monthly limit kept for transactional sends."
    )
    rate_limits: dict[str, RateLimitSetting] = Field(default_factory=dict)
    rate_limit_safety: float = Field(default=0.9, gt=0, le=1)
    plans: dict[PlanName, Plan] = Field(default_factory=dict)
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=300.0, gt=0)
    retry_window_h: float = Field(default=24.0, gt=0)
    max_planned_recipients: int = Field(default=10_000_000, ge=1)
    journeys: bool = Field(default=True, description="Run journey enrollment and the step scheduler here.")
    journey_poll_s: float = Field(
        default=5.0, gt=0, description="How often due journey steps are looked for."
    )
    journey_refresh_s: float = Field(
        default=2.0, gt=0, description="How often journey definitions are reloaded."
    )
    clock_offset_file: Path | None = Field(
        default=None,
        description="Tests and demos only: seconds to add to the clock, read from this file on every use.",
    )
    journey_max_steps: int = Field(default=10, ge=1)
    journey_max_wait_days: int = Field(default=30, ge=1)
    journey_min_wait_hours: int = Field(
        default=1, ge=0, description="Shortest wait of a step in hours (wait_unit 'hours')."
    )

    def load_channels(self) -> dict[str, ChannelConfig]:
        channels = dict(self.channels)
        if self.channels_file is not None:
            try:
                raw = json.loads(self.channels_file.read_text(encoding="utf-8"))
                loaded = {str(k): ChannelConfig.model_validate(v) for k, v in dict(raw).items()}
            except (OSError, ValueError, TypeError, ValidationError) as exc:
                raise ConfigurationError(
                    f"cannot read sender channels from {self.channels_file}: {exc}"
                ) from exc
            channels.update(loaded)
        return channels

    def limits(self) -> dict[str, RateLimit]:
        merged = dict(DEFAULT_LIMITS)
        merged.update({name: RateLimit(s.limit, s.window_s) for name, s in self.rate_limits.items()})
        return merged

    def all_plans(self) -> dict[PlanName, Plan]:
        return {**DEFAULT_PLANS, **self.plans}

    def journey_limits(self) -> JourneyLimits:
        return JourneyLimits(
            max_steps=self.journey_max_steps,
            max_wait_days=self.journey_max_wait_days,
            min_wait_hours=self.journey_min_wait_hours,
        )

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            base_s=self.retry_base_s, cap_s=self.retry_cap_s, window=timedelta(hours=self.retry_window_h)
        )
