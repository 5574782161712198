"""Dead letters: what a consumer could not apply, on ``<topic>.dlq.v1`` (DESIGN.md §3, §4).

Bad input never crashes a consumer and is never silently dropped: the consumer publishes the original
record (key and value as text; bytes that are not UTF-8 are kept as ``\\x`` escapes) with the reason, and
moves on. Operators inspect and replay these.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from tagline_contracts.base import Contract

DEAD_LETTER_SCHEMA: Literal["DeadLetter"] = "DeadLetter"


class DeadLetter(Contract):
    schema_name: Literal["DeadLetter"] = Field(alias="schema", default=DEAD_LETTER_SCHEMA)
    topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str
    error: str = Field(description="why the consumer refused it, for a human")
    consumer: str = Field(description="the consumer group that refused it")
    failed_at: AwareDatetime


def as_text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="backslashreplace")
