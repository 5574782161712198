"""Settings shared by every service (pydantic-settings).

Infrastructure addresses use the same unprefixed variable names everywhere (local scripts, docker compose,
tests): ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URL``. Service-specific settings use the prefix
``TAGLINE_<SERVICE>_`` (set ``env_prefix`` in the subclass).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of an env file such as ``.local/infra/infra.env`` (comments skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAGLINE_", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
        description="Comma-separated host:port list of Kafka brokers.",
    )
    mongodb_url: str = Field(
        default="mongodb://127.0.0.1:27017/",
        validation_alias=AliasChoices("MONGODB_URL", "mongodb_url"),
        description="MongoDB (or FerretDB) connection string.",
    )
    topic_namespace: str = Field(
        default="",
        validation_alias=AliasChoices("TAGLINE_TOPIC_NAMESPACE", "topic_namespace"),
        description="Prefix for every topic name (tests isolate themselves with it; empty in production).",
    )
    topic_partitions: int = Field(
        default=6,
        ge=1,
        validation_alias=AliasChoices("TAGLINE_TOPIC_PARTITIONS", "topic_partitions"),
        description="Partitions of each topic created at start-up.",
    )
    log_level: str = Field(
        default="INFO",
        validation_alias=AliasChoices("TAGLINE_LOG_LEVEL", "log_level"),
    )

    def topic(self, name: str) -> str:
        """The physical name of a ``tagline_contracts.topics`` topic in this deployment's namespace."""
        return f"{self.topic_namespace}{name}"


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap-servers`` and ``--namespace``: the command-line tools' overrides of the environment."""
    parser.add_argument("--bootstrap-servers", help="Kafka (default: KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--namespace", help="topic name prefix (default: TAGLINE_TOPIC_NAMESPACE)")


def settings_from_arguments(args: argparse.Namespace, settings: ServiceSettings | None) -> ServiceSettings:
    """``settings`` (default: the environment's) with the options of :func:`add_kafka_arguments` applied."""
    settings = settings or ServiceSettings()
    overrides: dict[str, str] = {}
    if args.bootstrap_servers:
        overrides["kafka_bootstrap_servers"] = args.bootstrap_servers
    if args.namespace is not None:
        overrides["topic_namespace"] = args.namespace
    return settings.model_copy(update=overrides)
