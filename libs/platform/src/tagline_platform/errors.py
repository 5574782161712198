"""Error roots for the shared platform library."""

from __future__ import annotations


class TaglineError(Exception):
    """Root of every error Tagline raises on purpose."""


class ConfigurationError(TaglineError):
    """Settings are missing or contradictory; the message says which and how to fix it."""


class InfrastructureUnavailable(TaglineError):
    """Kafka or MongoDB did not answer in time."""
