"""Tagger settings (env prefix ``TAGLINE_TAGGER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tagline_platform.settings import ServiceSettings
from tagline_tagger.domain.rfm import DEFAULT_THRESHOLDS, MIN_QUINTILE_POPULATION, AbsoluteThresholds


class TaggerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TAGLINE_TAGGER_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8082, ge=0, le=65535)
    database: str = "tagline_tagger"
    group_id: str = "tagline-tagger"
    max_batch: int = Field(default=5_000, ge=1, description="Records per batch of the member pipeline.")
    batch_timeout_ms: int = Field(default=50, ge=1, description="Longest wait to fill a batch.")
    cache_size: int = Field(default=200_000, ge=0, description="Members kept in memory per instance.")
    lookup_concurrency: int = Field(default=32, ge=1, description="Member reads in flight per batch.")
    rules_refresh_s: float = Field(
        default=2.0, gt=0, description="How often every instance reloads the rules."
    )
    sweep_interval_s: float = Field(default=60.0, gt=0, description="How often expired tags are looked for.")
    coverage_refresh_s: float = Field(
        default=60.0, gt=0, description="How often the coverage gauge is updated."
    )
    rfm_interval_s: float = Field(
        default=86_400.0,
        gt=0,
        description="How often each channel's RFM model is recomputed (on demand too: .../rfm/recompute).",
    )
    rfm_min_population: int = Field(
        default=MIN_QUINTILE_POPULATION,
        ge=1,
        description="Buyers a channel needs for quintile RFM scores; below it the absolute thresholds apply.",
    )
    rfm_thresholds: AbsoluteThresholds = Field(
        default=DEFAULT_THRESHOLDS,
        description="RFM cut points below the minimum population: JSON {recency_days, frequency, monetary}, "
        "four ascending numbers each.",
    )
    reply_ttl_s: float = Field(default=25.0, gt=0, description="Auto-replies to older messages are not sent.")
    jobs: bool = Field(default=True, description="Run the scheduled jobs (sweep, coverage, RFM) here.")
    consumer_lag_interval_s: float = Field(
        default=15.0, gt=0, description="How often the consumer lag on /metrics is measured."
    )
