"""check_storable: what fuzzing the APIs found MongoDB (FerretDB) refusing, and so answered with a 500."""

from __future__ import annotations

import math
from typing import Any

import pytest
from bson.int64 import Int64
from pydantic import ValidationError

from tagline_contracts.attributes import MemberUpdated
from tagline_contracts.base import MAX_JSON_DEPTH, check_storable
from tagline_contracts.sending import SendMessages


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.inf, "finite"),
        ({"a": [1, -math.inf]}, "finite"),
        ({"a": math.nan}, "finite"),
        (2**63, "64 bits"),
        ([-(2**63) - 1], "64 bits"),
        ({"$where": 1}, "key"),
        ({"a.b": 1}, "key"),
        ({"a\0": 1}, "key"),
        (_nested(MAX_JSON_DEPTH + 1), "nested"),
    ],
)
def test_what_mongodb_cannot_store_is_refused(value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_storable(value, "body")


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        2**63 - 1,
        -(2**63),
        1e308,
        -0.0,
        "$not a key",
        {"a$": {"b": [1, 2.5, "c"]}},
        _nested(20),
        Int64(2**40),  # as MongoDB gives it back: checking one took forever (`in range` walked the range)
    ],
)
def test_what_it_can_store_passes(value: Any) -> None:
    check_storable(value, "body")


@pytest.mark.parametrize("odd", [math.inf, 2**64, {"$set": 1}])
def test_messages_and_attributes_are_checked(odd: Any) -> None:
    with pytest.raises(ValidationError):
        SendMessages.model_validate(
            {
                "idempotency_key": "k",
                "category": "transactional",
                "messages": [{"type": "text", "text": "hi", "extra": odd}],
                "target": {"kind": "user", "user_id": "U1"},
            }
        )
    with pytest.raises(ValidationError):
        MemberUpdated.model_validate({"user_id": "U1", "attributes": {"level": odd}})


def test_a_string_holding_nul_cannot_be_stored() -> None:
    """PostgreSQL's jsonb (the embedded store) refuses NUL: a record holding one would fail every write."""
    with pytest.raises(ValueError, match=r"body\.a\[1\] holds a NUL"):
        check_storable({"a": ["ok", "x\0y"]}, "body")


def test_a_contract_with_nul_in_any_string_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"user_id: holds a NUL"):
        MemberUpdated.model_validate({"user_id": "U\0", "tags_add": [{"name": "vip"}]})
    with pytest.raises(ValidationError, match=r"'city' holds a NUL"):
        MemberUpdated.model_validate({"user_id": "U1", "attributes": {"city": "Tai\0pei"}})
