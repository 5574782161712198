"""Segment filters without servers: parsing and its errors, the evaluator, the query's shape, and properties.

That :func:`to_mongo_query` selects exactly what :func:`matches` accepts is checked against the real server in
``test_segments_mongo.py``; here the age translation is also checked by evaluating its bounds in Python.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tagline_contracts.base import Contract
from tagline_contracts.members import AttributeValue, FollowState, MemberSnapshot
from tagline_contracts.segments import (
    DATE_PATTERN,
    MAX_AGE,
    MAX_DEPTH,
    MAX_NODES,
    RFM_SEGMENTS,
    SEGMENT_FILTER,
    AgeCondition,
    AndCondition,
    AttributeCondition,
    FieldMap,
    FollowCondition,
    LastInteractionCondition,
    NotCondition,
    OrCondition,
    RfmCondition,
    SegmentFilter,
    TagsCondition,
    filter_depth,
    filter_size,
    matches,
    to_mongo_query,
)

NOW = datetime(2025, 3, 1, 12, 0, 0, 123_456, tzinfo=UTC)
TODAY = date(2025, 3, 1)
FOLLOWED = {"op": "follow", "state": "followed"}


def parse(raw: dict[str, Any]) -> SegmentFilter:
    return SEGMENT_FILTER.validate_python(raw)


def member(
    *,
    tags: tuple[str, ...] = (),
    attributes: dict[str, AttributeValue] | None = None,
    follow_state: FollowState = FollowState.FOLLOWED,
    last_interaction_at: datetime | None = None,
    rfm_segment: str | None = None,
) -> MemberSnapshot:
    return MemberSnapshot(
        user_id="U1",
        tags=list(tags),
        attributes=attributes or {},
        follow_state=follow_state,
        last_interaction_at=last_interaction_at,
        rfm_segment=rfm_segment,
    )


def check(raw: dict[str, Any], snapshot: MemberSnapshot, *, now: datetime = NOW, today: date = TODAY) -> bool:
    return matches(parse(raw), snapshot, now=now, today=today)


def born(birth_date: AttributeValue) -> MemberSnapshot:
    return member(attributes={"birth_date": birth_date})


# ----------------------------------------------------------------------------------------------------
# Parsing


CAMPAIGN = {
    "op": "and",
    "conditions": [
        {"op": "follow", "state": "followed"},
        {"op": "tags", "any": ["vip", "repeat-buyer"], "none": ["opted-out"]},
        {"op": "attribute", "key": "region", "in": ["taipei", "new-taipei"]},
        {"op": "age", "min": 18, "max": 34},
        {"op": "last_interaction", "within_days": 30},
        {"op": "not", "condition": {"op": "rfm", "segments": ["Lost", "At Risk"]}},
    ],
}


def test_a_campaign_filter_parses_from_json_and_round_trips() -> None:
    parsed = SEGMENT_FILTER.validate_json(json.dumps(CAMPAIGN))

    assert isinstance(parsed, AndCondition)
    region = parsed.conditions[2]
    assert isinstance(region, AttributeCondition)
    assert region.in_ == ("taipei", "new-taipei")
    dumped = SEGMENT_FILTER.dump_python(parsed, mode="json")
    assert dumped["conditions"][2]["in"] == ["taipei", "new-taipei"]  # the wire name, not in_
    assert SEGMENT_FILTER.validate_json(SEGMENT_FILTER.dump_json(parsed)) == parsed


def test_filters_build_in_python_and_nest_in_other_contracts() -> None:
    class Broadcast(Contract):
        name: str
        audience: SegmentFilter

    built = AndCondition(
        conditions=(
            FollowCondition(state=FollowState.FOLLOWED),
            AttributeCondition(key="region", in_=("taipei",)),
        )
    )
    parsed = Broadcast.model_validate(
        {
            "name": "spring sale",
            "audience": {
                "op": "and",
                "conditions": [FOLLOWED, {"op": "attribute", "key": "region", "in": ["taipei"]}],
            },
        }
    )

    assert parsed.audience == built
    assert Broadcast.model_validate_json(parsed.model_dump_json()) == parsed


def test_every_rfm_segment_name_is_accepted() -> None:
    assert len(RFM_SEGMENTS) == 10
    parsed = parse({"op": "rfm", "segments": list(RFM_SEGMENTS)})
    assert isinstance(parsed, RfmCondition)
    assert parsed.segments == RFM_SEGMENTS


def _nested_nots(levels: int) -> dict[str, Any]:
    raw: dict[str, Any] = FOLLOWED
    for _ in range(levels - 1):
        raw = {"op": "not", "condition": raw}
    return raw


def _wide(branches: int, leaves_each: int) -> dict[str, Any]:
    return {"op": "or", "conditions": [{"op": "and", "conditions": [FOLLOWED] * leaves_each}] * branches}


def test_filters_at_the_size_limits_are_accepted() -> None:
    deepest = parse(_nested_nots(MAX_DEPTH))
    largest = parse({"op": "or", "conditions": [_wide(32, 5), _wide(1, 4)]})  # 1 + 193 + 6 conditions

    assert filter_depth(deepest) == MAX_DEPTH
    assert filter_size(largest) == MAX_NODES


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("empty and", {"op": "and", "conditions": []}, "at least 1 item"),
    ("empty or", {"op": "or", "conditions": []}, "at least 1 item"),
    ("or of 51", {"op": "or", "conditions": [FOLLOWED] * 51}, "at most 50 items"),
    ("unknown op", {"op": "xor", "conditions": [FOLLOWED]}, "does not match any of the expected tags"),
    ("no op", {"state": "followed"}, "Unable to extract tag using discriminator 'op'"),
    ("unknown field", {"op": "follow", "state": "followed", "since": 3}, "Extra inputs are not permitted"),
    ("unknown RFM name", {"op": "rfm", "segments": ["Champion"]}, "Input should be 'Champions'"),
    ("no RFM name", {"op": "rfm", "segments": []}, "at least 1 item"),
    ("no tags", {"op": "tags", "all": [], "any": []}, "needs at least one tag in 'all', 'any' or 'none'"),
    ("empty tag name", {"op": "tags", "all": [""]}, "at least 1 character"),
    ("attribute with no test", {"op": "attribute", "key": "region"}, "use 'exists': false"),
    ("equals null", {"op": "attribute", "key": "region", "equals": None}, "exactly one of 'equals', 'in'"),
    (
        "equals and in",
        {"op": "attribute", "key": "region", "equals": "a", "in": ["b"]},
        "got equals and in",
    ),
    ("empty in", {"op": "attribute", "key": "region", "in": []}, "at least 1 item"),
    ("gte and gt", {"op": "attribute", "key": "score", "gte": 1, "gt": 2}, "either 'gte' or 'gt'"),
    ("lte and lt", {"op": "attribute", "key": "score", "lte": 1, "lt": 2}, "either 'lte' or 'lt'"),
    ("mixed bounds", {"op": "attribute", "key": "score", "gte": 1, "lt": "9"}, "all numbers or all strings"),
    ("inverted range", {"op": "attribute", "key": "score", "gte": 10, "lte": 1}, "the range is empty"),
    ("open empty range", {"op": "attribute", "key": "score", "gt": 5, "lte": 5}, "the range is empty"),
    ("boolean bound", {"op": "attribute", "key": "score", "gte": True}, "Input should be a valid integer"),
    ("NaN", {"op": "attribute", "key": "score", "equals": float("nan")}, "finite number"),
    ("int64 overflow", {"op": "attribute", "key": "score", "equals": 2**63}, "must fit in 64 bits"),
    (
        "int64 overflow in list",
        {"op": "attribute", "key": "score", "in": [1, -(2**63) - 1]},
        "must fit in 64",
    ),
    ("dotted key", {"op": "attribute", "key": "a.b", "exists": True}, "cannot contain '.', '$' or NUL"),
    ("operator key", {"op": "attribute", "key": "$where", "exists": True}, "cannot contain '.', '$' or NUL"),
    ("age without bounds", {"op": "age"}, "needs 'min', 'max' or both"),
    ("age min above max", {"op": "age", "min": 35, "max": 18}, "'min' (35) is above 'max' (18)"),
    ("negative age", {"op": "age", "min": -1}, "greater than or equal to 0"),
    ("fractional age", {"op": "age", "min": 17.5}, "valid integer"),
    ("bad follow state", {"op": "follow", "state": "friend"}, "'followed', 'blocked' or 'unknown'"),
    ("recency without days", {"op": "last_interaction"}, "needs 'within_days', 'older_than_days' or both"),
    (
        "recency window inverted",
        {"op": "last_interaction", "within_days": 7, "older_than_days": 30},
        "'within_days' (7) must be greater than 'older_than_days' (30)",
    ),
    ("too deep", _nested_nots(MAX_DEPTH + 1), "nested 9 levels deep; at most 8 are allowed"),
    ("too many conditions", _wide(40, 4), "has 201 conditions; at most 200 are allowed"),
    (
        "bad condition deep inside",
        {"op": "and", "conditions": [FOLLOWED, {"op": "not", "condition": {"op": "age", "min": -3}}]},
        "and.conditions.1.not.condition.age.min",
    ),
]


@pytest.mark.parametrize(("raw", "message"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_filters_are_rejected_with_a_clear_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse(raw)

    report = str(caught.value)
    assert report.startswith(f"{caught.value.error_count()} validation error"), report
    assert " for SegmentFilter\n" in report
    assert message in report


def test_absurdly_deep_input_is_a_validation_error_not_a_crash() -> None:
    depth = 2_000
    as_json = '{"op":"not","condition":' * depth + json.dumps(FOLLOWED) + "}" * depth

    with pytest.raises(ValidationError):
        SEGMENT_FILTER.validate_json(as_json)
    with pytest.raises(ValidationError):
        parse(_nested_nots(depth))


def test_directly_built_models_are_validated_too() -> None:
    deepest: SegmentFilter = FollowCondition(state=FollowState.FOLLOWED)
    for _ in range(MAX_DEPTH - 1):
        deepest = NotCondition(condition=deepest)
    with pytest.raises(ValidationError, match="at most 8 are allowed"):
        NotCondition(condition=deepest)
    with pytest.raises(ValidationError, match="exactly one of"):
        AttributeCondition(key="region", equals="taipei", exists=True)


# ----------------------------------------------------------------------------------------------------
# Evaluating


@pytest.mark.parametrize(
    ("raw", "tags", "expected"),
    [
        ({"all": ["vip", "tw"]}, ("vip", "tw", "new"), True),
        ({"all": ["vip", "tw"]}, ("vip",), False),
        ({"any": ["vip", "tw"]}, ("tw",), True),
        ({"any": ["vip", "tw"]}, ("new",), False),
        ({"any": ["vip"]}, (), False),
        ({"none": ["opted-out"]}, ("vip",), True),
        ({"none": ["opted-out"]}, (), True),
        ({"none": ["opted-out"]}, ("vip", "opted-out"), False),
        ({"all": ["vip"], "any": ["tw", "jp"], "none": ["opted-out"]}, ("vip", "jp"), True),
        ({"all": ["vip"], "any": ["tw", "jp"], "none": ["opted-out"]}, ("vip",), False),
        ({"all": ["vip"], "any": ["tw", "jp"], "none": ["opted-out"]}, ("vip", "tw", "opted-out"), False),
        ({"all": ["VIP"]}, ("vip",), False),
    ],
)
def test_tags(raw: dict[str, Any], tags: tuple[str, ...], expected: bool) -> None:
    assert check({"op": "tags", **raw}, member(tags=tags)) is expected


@pytest.mark.parametrize(
    ("test", "value", "expected"),
    [
        ({"equals": "taipei"}, "taipei", True),
        ({"equals": "taipei"}, "Taipei", False),
        ({"equals": "taipei"}, None, False),
        ({"equals": 1}, 1.0, True),  # numbers compare by value, as in MongoDB
        ({"equals": 1}, "1", False),  # but never across types
        ({"equals": 1}, True, False),
        ({"equals": True}, 1, False),
        ({"equals": True}, True, True),
        ({"equals": False}, 0, False),
        ({"in": ["taipei", "taichung"]}, "taichung", True),
        ({"in": ["taipei", "taichung"]}, "kaohsiung", False),
        ({"in": [1, "one"]}, 1.0, True),
        ({"gte": 18}, 18, True),
        ({"gt": 18}, 18, False),
        ({"gte": 1.5, "lt": 3}, 2, True),
        ({"gte": 1.5, "lt": 3}, 3.0, False),
        ({"gte": 18}, "20", False),  # a number range never matches a string
        ({"gte": 0}, True, False),  # nor a boolean
        ({"gte": "2024-01-01", "lt": "2025-01-01"}, "2024-07-15", True),  # ISO dates as strings
        ({"gte": "2024-01-01", "lt": "2025-01-01"}, "2025-01-01", False),
        ({"lte": "m"}, 5, False),  # a string range never matches a number
        ({"exists": True}, "taipei", True),
        ({"exists": True}, 0, True),
        ({"exists": True}, None, False),  # null counts as absent
        ({"exists": False}, None, True),
        ({"exists": False}, False, False),
    ],
)
def test_attribute(test: dict[str, Any], value: AttributeValue, expected: bool) -> None:
    raw = {"op": "attribute", "key": "k", **test}
    assert check(raw, member(attributes={"k": value})) is expected


def test_a_missing_attribute_matches_only_exists_false() -> None:
    nobody = member(attributes={"other": "x"})
    assert check({"op": "attribute", "key": "k", "exists": False}, nobody)
    assert not check({"op": "attribute", "key": "k", "exists": True}, nobody)
    assert not check({"op": "attribute", "key": "k", "in": ["x"]}, nobody)
    assert not check({"op": "attribute", "key": "k", "lt": 100}, nobody)


@pytest.mark.parametrize(
    ("birth_date", "today", "age"),
    [
        ("2007-03-01", date(2025, 3, 1), 18),  # 18th birthday today
        ("2007-03-02", date(2025, 3, 1), 17),  # tomorrow
        ("1990-12-31", date(2025, 1, 1), 34),
        ("1990-01-01", date(2025, 1, 1), 35),
        ("2000-02-29", date(2024, 2, 29), 24),  # leap day, leap year: birthday on the day
        ("2000-02-29", date(2024, 2, 28), 23),
        ("2000-02-29", date(2025, 2, 28), 24),  # common year: still 24 on 28 February
        ("2000-02-29", date(2025, 3, 1), 25),  # and 25 from 1 March
        ("2001-02-28", date(2024, 2, 29), 23),  # born 28 Feb, asked on a leap day
        ("2025-03-01", date(2025, 3, 1), 0),  # born today
    ],
)
def test_age_in_whole_years(birth_date: str, today: date, age: int) -> None:
    snapshot = born(birth_date)

    assert check({"op": "age", "min": age, "max": age}, snapshot, today=today)
    assert check({"op": "age", "min": age}, snapshot, today=today)
    assert not check({"op": "age", "min": age + 1}, snapshot, today=today)
    assert check({"op": "age", "max": age}, snapshot, today=today)
    if age > 0:
        assert not check({"op": "age", "max": age - 1}, snapshot, today=today)


@pytest.mark.parametrize(
    "birth_date",
    ["2001-02-29", "1990-13-01", "1990-04-31", "1990-1-1", "19900101", "1990/01/01", "1990-01-01T00:00:00",
     "1990-01-01\n", " 1990-01-01", "0000-01-01", "", "١٩٩٠-٠١-٠١", "2025-03-02", 19900101, None],
)  # fmt: skip
def test_members_without_a_valid_birth_date_never_match_an_age(birth_date: AttributeValue) -> None:
    snapshot = born(birth_date)

    assert not check({"op": "age", "min": 0}, snapshot)
    assert not check({"op": "age", "max": MAX_AGE}, snapshot)
    assert check({"op": "not", "condition": {"op": "age", "min": 0}}, snapshot)


def test_last_interaction_window_edges() -> None:
    within = {"op": "last_interaction", "within_days": 30}
    older = {"op": "last_interaction", "older_than_days": 30}
    window = {"op": "last_interaction", "within_days": 30, "older_than_days": 7}
    edge = NOW.replace(microsecond=123_000) - timedelta(days=30)  # to the millisecond, like MongoDB

    def at(moment: datetime | None) -> MemberSnapshot:
        return member(last_interaction_at=moment)

    assert check(within, at(edge))
    assert check(within, at(edge + timedelta(microseconds=999)))  # the same millisecond
    assert not check(within, at(edge - timedelta(milliseconds=1)))
    assert not check(older, at(edge))
    assert check(older, at(edge - timedelta(microseconds=1)))
    assert check(within, at(NOW.astimezone(timezone(timedelta(hours=8)))))  # any timezone
    assert check(window, at(NOW - timedelta(days=10)))
    assert not check(window, at(NOW - timedelta(days=3)))
    assert not check(window, at(NOW - timedelta(days=31)))
    assert not check(within, at(None))  # never interacted: neither recent
    assert not check(older, at(None))  # nor lapsed
    assert check({"op": "not", "condition": within}, at(None))


def test_time_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="aware datetime"):
        matches(FollowCondition(state=FollowState.FOLLOWED), member(), now=datetime(2025, 3, 1), today=TODAY)
    with pytest.raises(ValueError, match="aware datetime"):
        to_mongo_query(FollowCondition(state=FollowState.FOLLOWED), now=datetime(2025, 3, 1), today=TODAY)


def test_follow_state_and_rfm() -> None:
    blocked_champion = member(follow_state=FollowState.BLOCKED, rfm_segment="Champions")

    assert check({"op": "follow", "state": "blocked"}, blocked_champion)
    assert not check({"op": "follow", "state": "followed"}, blocked_champion)
    assert check({"op": "follow", "state": "unknown"}, member(follow_state=FollowState.UNKNOWN))
    assert check({"op": "rfm", "segments": ["Loyal Customers", "Champions"]}, blocked_champion)
    assert not check({"op": "rfm", "segments": ["Lost"]}, blocked_champion)
    assert not check({"op": "rfm", "segments": list(RFM_SEGMENTS)}, member(rfm_segment=None))


def test_a_nested_campaign_filter() -> None:
    target = member(
        tags=("vip",),
        attributes={"region": "taipei", "birth_date": "1995-06-15"},
        last_interaction_at=NOW - timedelta(days=2),
        rfm_segment="Champions",
    )

    assert check(CAMPAIGN, target)
    assert not check(CAMPAIGN, target.model_copy(update={"follow_state": FollowState.BLOCKED}))
    assert not check(CAMPAIGN, target.model_copy(update={"tags": ["vip", "opted-out"]}))
    assert not check(
        CAMPAIGN, target.model_copy(update={"attributes": {"region": "taichung", "birth_date": "1995-06-15"}})
    )
    assert not check(CAMPAIGN, target.model_copy(update={"rfm_segment": "At Risk"}))
    assert not check(CAMPAIGN, target.model_copy(update={"last_interaction_at": NOW - timedelta(days=31)}))
    assert check({"op": "or", "conditions": [{"op": "tags", "all": ["nobody"]}, CAMPAIGN]}, target)


# ----------------------------------------------------------------------------------------------------
# The query's shape (its results are checked on the real server in test_segments_mongo.py)


def test_query_document_for_a_campaign() -> None:
    query = to_mongo_query(parse(CAMPAIGN), now=NOW, today=TODAY)

    follow, tags, region, age, recency, not_rfm = query["$and"]
    assert follow == {"follow_state": {"$eq": "followed"}}
    assert tags == {"tags": {"$in": ["vip", "repeat-buyer"], "$nin": ["opted-out"]}}
    assert region == {"attributes.region": {"$in": ["taipei", "new-taipei"]}}
    assert age["attributes.birth_date"]["$lte"] == "2007-03-01"
    assert age["attributes.birth_date"]["$gt"] == "1990-03-01"
    assert recency == {"last_interaction_at": {"$gte": datetime(2025, 1, 30, 12, 0, 0, 123_000, tzinfo=UTC)}}
    assert not_rfm == {"$nor": [{"rfm_segment": {"$in": ["Lost", "At Risk"]}}]}


def test_field_map_points_the_query_at_other_paths() -> None:
    fields = FieldMap(
        follow_state="state",
        tags="tag_names",
        attributes="profile.attrs",
        last_interaction_at="seen_at",
        rfm_segment="rfm",
    )
    raw = {
        "op": "or",
        "conditions": [
            {"op": "follow", "state": "unknown"},
            {"op": "tags", "all": ["vip"]},
            {"op": "attribute", "key": "region", "exists": True},
            {"op": "age", "min": 18},
            {"op": "last_interaction", "older_than_days": 0},
            {"op": "rfm", "segments": ["Lost"]},
        ],
    }

    query = to_mongo_query(parse(raw), now=NOW, today=TODAY, fields=fields)

    assert [next(iter(part)) for part in query["$or"]] == [
        "state",
        "tag_names",
        "profile.attrs.region",
        "profile.attrs.birth_date",
        "seen_at",
        "rfm",
    ]
    assert query["$or"][0] == {"state": {"$in": ["unknown", None]}}  # a missing state is unknown
    top_level = to_mongo_query(parse(raw), now=NOW, today=TODAY, fields=FieldMap(attributes=""))
    assert next(iter(top_level["$or"][2])) == "region"


@pytest.mark.parametrize("path", ["", "$tags", "ta\x00gs"])
def test_field_map_rejects_unusable_paths(path: str) -> None:
    with pytest.raises(ValueError, match="not a usable field path"):
        FieldMap(tags=path)


# ----------------------------------------------------------------------------------------------------
# Properties

TAG_POOL = ("vip", "tw", "jp", "new", "opted-out")
REGIONS = ("taipei", "taichung", "Taipei", "台北", "")
SCALARS: tuple[AttributeValue, ...] = (*REGIONS, 0, 1, 1.0, 2.5, -3, True, False, "1", None)
BIRTH_DATES = st.one_of(
    st.dates(min_value=date(1900, 1, 1), max_value=date(2025, 12, 31)).map(date.isoformat),
    st.sampled_from(["2000-02-29", "2001-02-29", "1990-13-01", "19900101", "1990-01-01\n", ""]),
    st.none(),
    st.just(19900101),
)
SNAPSHOTS = st.builds(
    member,
    tags=st.lists(st.sampled_from(TAG_POOL), unique=True, max_size=4).map(tuple),
    attributes=st.fixed_dictionaries(
        {},
        optional={
            "region": st.sampled_from(SCALARS),
            "score": st.sampled_from(SCALARS),
            "birth_date": BIRTH_DATES,
        },
    ),
    follow_state=st.sampled_from(FollowState),
    last_interaction_at=st.none()
    | st.integers(min_value=-400 * 24, max_value=24).map(lambda hours: NOW - timedelta(hours=hours)),
    rfm_segment=st.none() | st.sampled_from(RFM_SEGMENTS),
)
TODAYS = st.dates(min_value=date(2000, 1, 1), max_value=date(2030, 12, 31))


@st.composite
def attribute_conditions(draw: st.DrawFn) -> AttributeCondition:
    key = draw(st.sampled_from(["region", "score", "birth_date"]))
    kind = draw(st.sampled_from(["equals", "in", "range", "exists"]))
    values = [value for value in SCALARS if value is not None]
    if kind == "equals":
        return AttributeCondition(key=key, equals=draw(st.sampled_from(values)))
    if kind == "in":
        return AttributeCondition(key=key, in_=tuple(draw(st.lists(st.sampled_from(values), min_size=1))))
    if kind == "exists":
        return AttributeCondition(key=key, exists=draw(st.booleans()))
    if draw(st.booleans()):
        low, high = sorted(draw(st.lists(st.integers(-5, 5), min_size=2, max_size=2)))
        return AttributeCondition(key=key, gte=low, lte=high)
    return AttributeCondition(key=key, gt=draw(st.sampled_from(["", "Taipei", "m", "taipei"])))


def _leaves() -> st.SearchStrategy[SegmentFilter]:
    tag_lists = st.lists(st.sampled_from(TAG_POOL), max_size=3).map(tuple)
    ages = st.integers(min_value=0, max_value=100)
    return st.one_of(
        st.tuples(tag_lists, tag_lists, tag_lists)
        .filter(any)
        .map(lambda lists: TagsCondition(all=lists[0], any=lists[1], none=lists[2])),
        attribute_conditions(),
        st.tuples(ages, ages).map(lambda pair: AgeCondition(min=min(pair), max=max(pair))),
        st.builds(FollowCondition, state=st.sampled_from(FollowState)),
        st.integers(min_value=1, max_value=400).map(lambda days: LastInteractionCondition(within_days=days)),
        st.integers(min_value=0, max_value=400).map(
            lambda days: LastInteractionCondition(older_than_days=days)
        ),
        st.builds(
            RfmCondition, segments=st.lists(st.sampled_from(RFM_SEGMENTS), min_size=1, unique=True).map(tuple)
        ),
    )


def filters(depth: int = 4) -> st.SearchStrategy[SegmentFilter]:
    """Filters at most ``depth`` levels deep (so two more ``not`` levels stay within the limit)."""
    if depth <= 1:
        return _leaves()
    inner = filters(depth - 1)
    groups = st.lists(inner, min_size=1, max_size=3).map(tuple)
    return st.one_of(
        _leaves(),
        groups.map(lambda conditions: AndCondition(conditions=conditions)),
        groups.map(lambda conditions: OrCondition(conditions=conditions)),
        inner.map(lambda condition: NotCondition(condition=condition)),
    )


def _agree(left: SegmentFilter, right: SegmentFilter, snapshot: MemberSnapshot, today: date) -> None:
    assert matches(left, snapshot, now=NOW, today=today) == matches(right, snapshot, now=NOW, today=today)


@given(segment=filters(), snapshot=SNAPSHOTS, today=TODAYS)
def test_not_not_is_the_filter_itself(segment: SegmentFilter, snapshot: MemberSnapshot, today: date) -> None:
    _agree(NotCondition(condition=NotCondition(condition=segment)), segment, snapshot, today)


@given(left=filters(3), right=filters(3), snapshot=SNAPSHOTS, today=TODAYS)
def test_de_morgan(left: SegmentFilter, right: SegmentFilter, snapshot: MemberSnapshot, today: date) -> None:
    def negated(segment: SegmentFilter) -> SegmentFilter:
        return NotCondition(condition=segment)

    _agree(
        negated(AndCondition(conditions=(left, right))),
        OrCondition(conditions=(negated(left), negated(right))),
        snapshot,
        today,
    )
    _agree(
        negated(OrCondition(conditions=(left, right))),
        AndCondition(conditions=(negated(left), negated(right))),
        snapshot,
        today,
    )


@given(segment=filters(), snapshot=SNAPSHOTS)
def test_a_filter_means_the_same_after_a_json_round_trip(
    segment: SegmentFilter, snapshot: MemberSnapshot
) -> None:
    again = SEGMENT_FILTER.validate_json(SEGMENT_FILTER.dump_json(segment))

    assert again == segment
    _agree(again, segment, snapshot, TODAY)


ALLOWED_OPERATORS = {
    "$and",
    "$or",
    "$nor",
    "$all",
    "$in",
    "$nin",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
} | {
    "$exists",
    "$regex",
}


def _operators(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("$"):
                yield key
            yield from _operators(value)
    elif isinstance(node, list):
        for item in node:
            yield from _operators(item)


@given(segment=filters(), today=TODAYS)
def test_queries_use_only_operators_ferretdb_supports(segment: SegmentFilter, today: date) -> None:
    query = to_mongo_query(segment, now=NOW, today=today)

    assert set(_operators(query)) <= ALLOWED_OPERATORS
    assert not any(key.startswith("$") and key not in {"$and", "$or", "$nor"} for key in query)


def _python_string_test(test: dict[str, str], value: AttributeValue) -> bool:
    """A string-field query test evaluated the way MongoDB would (strings only, code point order)."""
    pattern = test["$regex"]
    assert pattern == f"^{DATE_PATTERN}\\z"
    return (
        isinstance(value, str)
        and re.fullmatch(DATE_PATTERN, value) is not None
        and ("$lte" not in test or value <= test["$lte"])
        and ("$gt" not in test or value > test["$gt"])
    )


@settings(max_examples=500)
@given(
    birth=st.one_of(
        st.dates(min_value=date(1850, 1, 1)).map(date.isoformat),
        st.sampled_from(["2000-02-29", "2004-02-29", "1900-02-29", "2001-02-29"]),
    ),
    today=st.one_of(TODAYS, st.sampled_from([date(2024, 2, 29), date(2025, 2, 28), date(2100, 2, 28)])),
    low=st.none() | st.integers(min_value=0, max_value=MAX_AGE),
    span=st.none() | st.integers(min_value=0, max_value=40),
)
@example(birth="2000-02-29", today=date(2025, 2, 28), low=25, span=None)
@example(birth="2000-02-29", today=date(2025, 3, 1), low=25, span=None)
@example(birth="2007-02-28", today=date(2024, 2, 29), low=None, span=17)
def test_age_bounds_in_the_query_agree_with_the_evaluator(
    birth: str, today: date, low: int | None, span: int | None
) -> None:
    high = None if span is None else min((low or 0) + span, MAX_AGE)
    if low is None and high is None:
        low = 0
    condition = AgeCondition(min=low, max=high)

    query = to_mongo_query(condition, now=NOW, today=today)

    assert _python_string_test(query["attributes.birth_date"], birth) == matches(
        condition, born(birth), now=NOW, today=today
    )


def _real_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def test_the_date_pattern_accepts_exactly_the_real_dates() -> None:
    years = [*range(1890, 2110), 1, 4, 100, 400, 1600, 1700, 1800, 2400, 9996, 9999, 0]
    for year in years:
        for month in range(14):
            for day in range(33):
                text = f"{year:04d}-{month:02d}-{day:02d}"
                assert (re.fullmatch(DATE_PATTERN, text) is not None) == _real_date(text), text


@given(text=st.text(alphabet="0123456789-", min_size=8, max_size=12) | st.text(max_size=12))
def test_the_date_pattern_rejects_everything_else(text: str) -> None:
    shaped = re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text) is not None
    assert (re.fullmatch(DATE_PATTERN, text) is not None) == (shaped and _real_date(text))
