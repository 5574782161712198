"""On the real FerretDB server, ``find(to_mongo_query(f))`` finds exactly the members ``matches(f)`` accepts.

A few hundred generated members (tricky values on purpose: ``1`` vs ``1.0`` vs ``True`` vs ``"1"``, nulls and
missing fields, impossible and malformed birth dates, birthdays around 29 February, interactions a millisecond
either side of a window's edge, other timezones) and a few hundred generated filters, asked on several days.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from tagline_contracts.members import AttributeValue, FollowState, MemberSnapshot
from tagline_contracts.segments import (
    DEFAULT_FIELDS,
    MAX_AGE,
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
    matches,
    to_mongo_query,
)

pytestmark = pytest.mark.integration

Document = dict[str, Any]

NOW = datetime(2025, 3, 1, 9, 30, 15, 654_321, tzinfo=UTC)
# A leap day, the 28 February and 1 March of a common year: the days age boundaries move around.
DAYS = (date(2024, 2, 29), date(2025, 2, 28), date(2025, 3, 1))
TAGS = ("vip", "tw", "jp", "new", "opted-out", "VIP")
STRINGS = ("taipei", "Taipei", "taichung", "台北", "é", "", "1", "m", "2024-06-01", "2025-01-15")
NUMBERS: tuple[int | float, ...] = (0, 1, 1.0, -0.0, 2.5, -3, 7, 18, 2**40, 1e300)
BOOLEANS = (True, False)
DATE_KEYS = ("signup", "region", "score", "flag", "birth_date")
TAIPEI = timezone(timedelta(hours=8))


def _birth_dates(rng: random.Random) -> list[AttributeValue]:
    """Birth dates near every age boundary the filters can ask about, plus malformed ones."""
    dates: list[AttributeValue] = [
        "2000-02-29", "2004-02-29", "1996-02-29", "2001-02-29", "1900-02-29", "1990-13-01", "1990-04-31",
        "1990-1-1", "19900101", "1990-01-01\n", " 1990-01-01", "0000-01-01", "", "2030-01-01", 19900101,
    ]  # fmt: skip
    for today in DAYS:
        for years in (0, 1, 17, 18, 19, 24, 25, 34, 35, 36, 64, 65, 99):
            try:
                birthday = today.replace(year=today.year - years)
            except ValueError:  # 29 February, in a common year
                birthday = today.replace(year=today.year - years, day=28)
            dates += [(birthday + timedelta(days=shift)).isoformat() for shift in (-1, 0, 1)]
    rng.shuffle(dates)
    return dates


def _interaction_times() -> list[datetime | None]:
    millis = NOW.replace(microsecond=NOW.microsecond // 1000 * 1000)
    times: list[datetime | None] = [None, NOW, NOW + timedelta(hours=1)]
    for days in (0, 1, 7, 30, 90, 365):
        edge = millis - timedelta(days=days)
        times += [edge, edge + timedelta(microseconds=999), edge - timedelta(microseconds=1)]
        times += [edge - timedelta(milliseconds=1), (edge + timedelta(milliseconds=1)).astimezone(TAIPEI)]
    return times


def _attribute_value(rng: random.Random, key: str, birth_dates: list[AttributeValue]) -> AttributeValue:
    if key == "birth_date" and rng.random() < 0.85:
        return rng.choice(birth_dates)
    pool: tuple[AttributeValue, ...] = (*STRINGS, *NUMBERS, *BOOLEANS, None)
    return rng.choice(pool)


def make_members(rng: random.Random, count: int) -> list[MemberSnapshot]:
    birth_dates = _birth_dates(rng)
    times = _interaction_times()
    members = []
    for number in range(count):
        keys = [key for key in DATE_KEYS if rng.random() < 0.7]
        members.append(
            MemberSnapshot(
                user_id=f"U{number:04d}",
                follow_state=rng.choice(list(FollowState)),
                tags=rng.sample(TAGS, rng.randint(0, 4)),
                attributes={key: _attribute_value(rng, key, birth_dates) for key in keys},
                last_interaction_at=rng.choice(times),
                rfm_segment=rng.choice([None, *RFM_SEGMENTS]),
            )
        )
    return members


def _put(document: Document, path: str, value: object) -> None:
    *parents, last = path.split(".")
    for part in parents:
        document = document.setdefault(part, {})
    document[last] = value


def to_document(snapshot: MemberSnapshot, fields: FieldMap, rng: random.Random) -> Document:
    """The snapshot as a collection would store it; defaults and nulls are sometimes left out entirely."""
    document: Document = {"_id": snapshot.user_id}

    def put(path: str, value: object, default: object) -> None:
        if value != default or rng.random() < 0.5:
            _put(document, path, value)

    put(fields.follow_state, snapshot.follow_state.value, FollowState.UNKNOWN.value)
    put(fields.tags, list(snapshot.tags), [])
    attributes = {
        key: value for key, value in snapshot.attributes.items() if value is not None or rng.random() < 0.5
    }
    put(fields.attributes, attributes, {})
    put(fields.last_interaction_at, snapshot.last_interaction_at, None)
    put(fields.rfm_segment, snapshot.rfm_segment, None)
    return document


# ----------------------------------------------------------------------------------------------------
# Filters


def _scalar(rng: random.Random) -> bool | int | float | str:
    return rng.choice([*STRINGS, *NUMBERS, *BOOLEANS])


def _attribute_condition(rng: random.Random) -> AttributeCondition:
    key = rng.choice(DATE_KEYS)
    kind = rng.choice(["equals", "in", "range", "range", "exists"])
    if kind == "equals":
        return AttributeCondition(key=key, equals=_scalar(rng))
    if kind == "in":
        return AttributeCondition(key=key, in_=tuple(_scalar(rng) for _ in range(rng.randint(1, 4))))
    if kind == "exists":
        return AttributeCondition(key=key, exists=rng.random() < 0.5)
    pool: list[Any] = sorted(rng.choice([[*STRINGS], [n for n in NUMBERS if n < 1e300]]))
    low, high = sorted(rng.sample(range(len(pool)), 2))
    bounds: dict[str, Any] = {}
    if rng.random() < 0.8:
        bounds[rng.choice(["gte", "gt"])] = pool[low]
    if rng.random() < 0.8 or not bounds:
        bounds[rng.choice(["lte", "lt"])] = pool[high]
    if pool[low] == pool[high] and ("gt" in bounds or "lt" in bounds):
        bounds = {"gte": pool[low]}
    return AttributeCondition.model_validate({"key": key, **bounds})


def _leaf(rng: random.Random) -> SegmentFilter:  # noqa: PLR0911
    match rng.randrange(7):
        case 0:
            lists = [tuple(rng.sample(TAGS, rng.randint(0, 2))) for _ in range(3)]
            if not any(lists):
                lists[rng.randrange(3)] = (rng.choice(TAGS),)
            return TagsCondition(all=lists[0], any=lists[1], none=lists[2])
        case 1:
            return _attribute_condition(rng)
        case 2:
            ages = (0, 1, 17, 18, 19, 24, 25, 34, 35, 65, MAX_AGE)
            low = rng.choice([None, *ages])
            high = rng.choice([None, *(age for age in ages if low is None or age >= low)])
            return (
                AgeCondition(min=low, max=high)
                if low is not None or high is not None
                else AgeCondition(max=34)
            )
        case 3:
            return FollowCondition(state=rng.choice(list(FollowState)))
        case 4:
            older = rng.choice([None, 0, 1, 7, 30])
            within = rng.choice(
                [None, *(days for days in (1, 7, 30, 90, 365) if older is None or days > older)]
            )
            if within is None and older is None:
                within = 30
            return LastInteractionCondition(within_days=within, older_than_days=older)
        case 5:
            return RfmCondition(segments=tuple(rng.sample(RFM_SEGMENTS, rng.randint(1, 4))))
        case _:
            return AttributeCondition(key="region", exists=True)


def make_filter(rng: random.Random, depth: int = 4) -> SegmentFilter:
    choice = rng.random() if depth > 1 else 0.0
    if choice < 0.45:
        return _leaf(rng)
    if choice < 0.85:
        conditions = tuple(make_filter(rng, depth - 1) for _ in range(rng.randint(1, 4)))
        return AndCondition(conditions=conditions) if choice < 0.65 else OrCondition(conditions=conditions)
    return NotCondition(condition=make_filter(rng, depth - 1))


# ----------------------------------------------------------------------------------------------------
# The comparison


async def _found(collection: AsyncCollection[Document], query: Document) -> set[str]:
    return {document["_id"] async for document in collection.find(query, projection={"_id": 1})}


async def _compare(
    collection: AsyncCollection[Document],
    members: list[MemberSnapshot],
    segments: list[SegmentFilter],
    fields: FieldMap,
) -> list[int]:
    sizes = []
    for number, segment in enumerate(segments):
        today = DAYS[number % len(DAYS)]
        expected = {member.user_id for member in members if matches(segment, member, now=NOW, today=today)}
        query = to_mongo_query(segment, now=NOW, today=today, fields=fields)
        found = await _found(collection, query)
        assert found == expected, (
            f"filter {SEGMENT_FILTER.dump_json(segment, exclude_none=True).decode()} on {today}\n"
            f"query {query}\n"
            f"only in MongoDB: {sorted(found - expected)}\nonly in Python: {sorted(expected - found)}"
        )
        sizes.append(len(found))
    return sizes


async def _load(
    mongo_db: AsyncDatabase[Document], name: str, members: list[MemberSnapshot], fields: FieldMap, seed: int
) -> AsyncCollection[Document]:
    rng = random.Random(seed)
    collection = mongo_db[name]
    await collection.insert_many([to_document(member, fields, rng) for member in members])
    return collection


async def test_query_and_evaluator_select_the_same_members(mongo_db: AsyncDatabase[Document]) -> None:
    rng = random.Random(20250301)
    members = make_members(rng, 240)
    collection = await _load(mongo_db, "members", members, DEFAULT_FIELDS, seed=1)
    segments = [make_filter(rng) for _ in range(200)]

    sizes = await _compare(collection, members, segments, DEFAULT_FIELDS)

    # The generated filters must be telling: many select some members but not all of them.
    assert sum(0 < size < len(members) for size in sizes) > len(sizes) // 2
    assert sum(size == 0 for size in sizes) < len(sizes) // 4


async def test_every_kind_of_leaf_agrees(mongo_db: AsyncDatabase[Document]) -> None:
    rng = random.Random(7)
    members = make_members(rng, 240)
    collection = await _load(mongo_db, "members", members, DEFAULT_FIELDS, seed=2)
    segments: list[SegmentFilter] = [_leaf(rng) for _ in range(110)]
    segments += [NotCondition(condition=segment) for segment in segments[:50]]

    sizes = await _compare(collection, members, segments, DEFAULT_FIELDS)

    assert sum(0 < size < len(members) for size in sizes) > len(sizes) // 2


async def test_field_map_for_another_layout(mongo_db: AsyncDatabase[Document]) -> None:
    fields = FieldMap(
        follow_state="state",
        tags="tag_names",
        attributes="profile.attrs",
        last_interaction_at="activity.last_at",
        rfm_segment="rfm",
    )
    rng = random.Random(99)
    members = make_members(rng, 160)
    collection = await _load(mongo_db, "projection", members, fields, seed=3)
    segments = [make_filter(rng, depth=3) for _ in range(80)]

    sizes = await _compare(collection, members, segments, fields)

    assert sum(0 < size < len(members) for size in sizes) > len(sizes) // 2
