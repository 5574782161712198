"""Segment filters: which members a send, a journey branch or a report is about.

A :data:`SegmentFilter` is a small JSON tree, discriminated on ``op``::

    {"op": "and", "conditions": [
        {"op": "follow", "state": "followed"},
        {"op": "tags", "any": ["vip", "repeat-buyer"], "none": ["opted-out"]},
        {"op": "attribute", "key": "region", "in": ["taipei", "new-taipei"]},
        {"op": "age", "min": 18, "max": 34},
        {"op": "last_interaction", "within_days": 30},
        {"op": "not", "condition": {"op": "rfm", "segments": ["Lost"]}}
    ]}

It is evaluated two ways that must agree, and a test against the real FerretDB server checks that they do:

* :func:`matches` decides for one :class:`~tagline_contracts.members.MemberSnapshot` (tagger, on each change);
* :func:`to_mongo_query` turns the filter into a MongoDB query over stored snapshots (sender, for a whole
  segment at once), using only operators FerretDB 1.x supports (``$and $or $nor $all $in $nin $eq $ne $gt
  $gte $lt $lte $exists $regex``; no ``$expr``/``$where``).

Semantics shared by both:

* An attribute whose value is ``null`` counts as absent. Values are compared the way MongoDB compares them:
  ``1`` equals ``1.0``, but a boolean never equals a number and a string never equals a number; a range with
  number bounds only matches numbers, one with string bounds only strings (compared by code point, which is
  the order of their UTF-8 bytes).
* ``age`` is in whole years on ``today`` from the ``birth_date`` attribute, which must be a real calendar date
  written ``YYYY-MM-DD`` and not after ``today``; members without one never match an ``age`` condition (but
  do match its ``not``). Someone born on 29 February turns a year older on 1 March in common years.
* ``last_interaction`` compares ``last_interaction_at`` with ``now`` minus whole days (``within_days``:
  at or after, ``older_than_days``: strictly before), to the millisecond (MongoDB's precision). Members that
  never interacted match neither; wrap a ``within_days`` condition in ``not`` to include them.

Size is bounded (:data:`MAX_DEPTH` levels, :data:`MAX_NODES` conditions, :data:`MAX_CONDITIONS` per
``and``/``or``) so a filter stays cheap to evaluate and its query stays small.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Self, TypeVar, assert_never, get_args

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)

from tagline_contracts.base import Contract
from tagline_contracts.members import FollowState, MemberSnapshot

MAX_DEPTH: Final = 8
"""Levels of nesting: a single condition is 1 level, ``and`` of single conditions 2, and so on."""
MAX_NODES: Final = 200
"""Conditions in one filter, counting ``and``/``or``/``not`` themselves."""
MAX_CONDITIONS: Final = 50
"""Conditions directly under one ``and``/``or``."""
MAX_VALUES: Final = 100
"""Values in one list (tag names, ``in`` values)."""
MAX_AGE: Final = 150
MAX_DAYS: Final = 36_500

BIRTH_DATE_ATTRIBUTE: Final = "birth_date"

RfmSegment = Literal[
    "Champions",
    "Loyal Customers",
    "Potential Loyalist",
    "New Customers",
    "Promising",
    "Need Attention",
    "About To Sleep",
    "At Risk",
    "Can't Lose Them",
    "Lost",
]
RFM_SEGMENTS: Final[tuple[RfmSegment, ...]] = get_args(RfmSegment)
"""The ten RFM segment names, best customers first."""

_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_T = TypeVar("_T")


def _fits_bson(value: _T) -> _T:
    # Checked after the union: a strict float takes a too-large int, which would silently become a double.
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError("an integer must fit in 64 bits (-2**63 to 2**63 - 1)")
    return value


FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Text = Annotated[StrictStr, StringConstraints(max_length=1000)]
Scalar = Annotated[StrictBool | StrictInt | FiniteFloat | Text, AfterValidator(_fits_bson)]
"""A value to compare an attribute with (``null`` is not one: use ``exists``)."""
Bound = Annotated[StrictInt | FiniteFloat | Text, AfterValidator(_fits_bson)]
"""A range bound: numbers and strings only."""
TagName = Annotated[StrictStr, StringConstraints(min_length=1, max_length=200)]
TagNames = Annotated[tuple[TagName, ...], Field(max_length=MAX_VALUES)]
Days = Annotated[StrictInt, Field(ge=0, le=MAX_DAYS)]
Years = Annotated[StrictInt, Field(ge=0, le=MAX_AGE)]

_BAD_KEY_CHARS: Final = frozenset(".$\x00")


class _Condition(Contract):
    """Base of every node: a :class:`Contract` that always writes ``in`` (not ``in_``) when serialized."""

    model_config = ConfigDict(serialize_by_alias=True)


class TagsCondition(_Condition):
    """The member has every tag in ``all``, at least one in ``any`` and none in ``none``."""

    op: Literal["tags"] = "tags"
    all: TagNames = ()
    any: TagNames = ()
    none: TagNames = ()

    @model_validator(mode="after")
    def _some_tag(self) -> Self:
        if not (self.all or self.any or self.none):
            raise ValueError("a tags condition needs at least one tag in 'all', 'any' or 'none'")
        return self


class AttributeCondition(_Condition):
    """One attribute: ``equals`` a value, is ``in`` a list, lies in a range, or ``exists`` (or not)."""

    op: Literal["attribute"] = "attribute"
    key: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)]
    equals: Scalar | None = None
    in_: Annotated[tuple[Scalar, ...], Field(min_length=1, max_length=MAX_VALUES)] | None = Field(
        default=None, alias="in"
    )
    gte: Bound | None = None
    gt: Bound | None = None
    lte: Bound | None = None
    lt: Bound | None = None
    exists: StrictBool | None = None

    @field_validator("key")
    @classmethod
    def _storable_key(cls, key: str) -> str:
        if _BAD_KEY_CHARS.intersection(key):
            raise ValueError("an attribute key cannot contain '.', '$' or NUL")
        return key

    @model_validator(mode="after")
    def _one_test(self) -> Self:
        given = [
            name
            for name, present in (
                ("equals", self.equals is not None),
                ("in", self.in_ is not None),
                ("a range", bool(self.bounds())),
                ("exists", self.exists is not None),
            )
            if present
        ]
        if len(given) != 1:
            raise ValueError(
                "an attribute condition needs exactly one of 'equals', 'in', a range ('gte'/'gt'/'lte'/'lt') "
                f"or 'exists'; got {' and '.join(given) if given else 'none'}"
                + ("" if given else " (to match a missing attribute use 'exists': false)")
            )
        if self.bounds():
            self._check_range()
        return self

    def _check_range(self) -> None:
        if self.gte is not None and self.gt is not None:
            raise ValueError("use either 'gte' or 'gt', not both")
        if self.lte is not None and self.lt is not None:
            raise ValueError("use either 'lte' or 'lt', not both")
        kinds = {isinstance(bound, str) for _, bound in self.bounds()}
        if len(kinds) > 1:
            raise ValueError("range bounds must be all numbers or all strings")
        lower = self.gte if self.gte is not None else self.gt
        upper = self.lte if self.lte is not None else self.lt
        if lower is None or upper is None:
            return
        inclusive = self.gte is not None and self.lte is not None
        if lower > upper or (lower == upper and not inclusive):  # type: ignore[operator]  # same kind, checked
            raise ValueError(f"the range is empty: nothing is both above {lower!r} and below {upper!r}")

    def bounds(self) -> list[tuple[str, int | float | str]]:
        """The range bounds that are set, as ``(operator name, bound)``: ``gte``, ``gt``, ``lte``, ``lt``."""
        return [
            (name, bound)
            for name, bound in (("gte", self.gte), ("gt", self.gt), ("lte", self.lte), ("lt", self.lt))
            if bound is not None
        ]


class AgeCondition(_Condition):
    """Age in whole years (from the ``birth_date`` attribute) between ``min`` and ``max``, both inclusive."""

    op: Literal["age"] = "age"
    min: Years | None = None
    max: Years | None = None

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if self.min is None and self.max is None:
            raise ValueError("an age condition needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"age 'min' ({self.min}) is above 'max' ({self.max})")
        return self


class FollowCondition(_Condition):
    """The member's follow state (``unknown``: Tagline has not seen a follow or block yet)."""

    op: Literal["follow"] = "follow"
    state: FollowState


class LastInteractionCondition(_Condition):
    """Interacted within the last ``within_days`` days and/or not in the last ``older_than_days`` days."""

    op: Literal["last_interaction"] = "last_interaction"
    within_days: Days | None = None
    older_than_days: Days | None = None

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if self.within_days is None and self.older_than_days is None:
            raise ValueError("a last_interaction condition needs 'within_days', 'older_than_days' or both")
        if (
            self.within_days is not None
            and self.older_than_days is not None
            and self.within_days <= self.older_than_days
        ):
            raise ValueError(
                f"'within_days' ({self.within_days}) must be greater than 'older_than_days' "
                f"({self.older_than_days}), or no moment is in both"
            )
        return self


class RfmCondition(_Condition):
    """The member's RFM segment is one of ``segments`` (see :data:`RFM_SEGMENTS`)."""

    op: Literal["rfm"] = "rfm"
    segments: Annotated[tuple[RfmSegment, ...], Field(min_length=1, max_length=MAX_VALUES)]


class AndCondition(_Condition):
    """Every one of ``conditions`` holds."""

    op: Literal["and"] = "and"
    conditions: Annotated[tuple[SegmentFilter, ...], Field(min_length=1, max_length=MAX_CONDITIONS)]

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        _check_size(self)
        return self


class OrCondition(_Condition):
    """At least one of ``conditions`` holds."""

    op: Literal["or"] = "or"
    conditions: Annotated[tuple[SegmentFilter, ...], Field(min_length=1, max_length=MAX_CONDITIONS)]

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        _check_size(self)
        return self


class NotCondition(_Condition):
    """``condition`` does not hold."""

    op: Literal["not"] = "not"
    condition: SegmentFilter

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        _check_size(self)
        return self


SegmentFilter = Annotated[
    TagsCondition
    | AttributeCondition
    | AgeCondition
    | FollowCondition
    | LastInteractionCondition
    | RfmCondition
    | AndCondition
    | OrCondition
    | NotCondition,
    Field(discriminator="op"),
]
"""A segment filter; use it as a field type in other contracts, or :data:`SEGMENT_FILTER` on its own."""

SEGMENT_FILTER: Final[TypeAdapter[SegmentFilter]] = TypeAdapter(
    SegmentFilter, config=ConfigDict(title="SegmentFilter")
)
"""Parses (``validate_python``/``validate_json``) and serializes (``dump_python``/``dump_json``) a filter."""


def children(segment: SegmentFilter) -> tuple[SegmentFilter, ...]:
    """The conditions directly under ``segment`` (none for a single condition)."""
    if isinstance(segment, AndCondition | OrCondition):
        return segment.conditions
    if isinstance(segment, NotCondition):
        return (segment.condition,)
    return ()


def filter_depth(segment: SegmentFilter) -> int:
    """Levels of nesting: 1 for a single condition."""
    return 1 + max((filter_depth(child) for child in children(segment)), default=0)


def filter_size(segment: SegmentFilter) -> int:
    """Number of conditions, counting ``and``/``or``/``not`` themselves."""
    return 1 + sum(filter_size(child) for child in children(segment))


def _check_size(segment: AndCondition | OrCondition | NotCondition) -> None:
    # Children were validated first, so each is within bounds and this stays cheap.
    depth = filter_depth(segment)
    if depth > MAX_DEPTH:
        raise ValueError(f"the filter is nested {depth} levels deep; at most {MAX_DEPTH} are allowed")
    size = filter_size(segment)
    if size > MAX_NODES:
        raise ValueError(f"the filter has {size} conditions; at most {MAX_NODES} are allowed")


# ----------------------------------------------------------------------------------------------------
# Evaluating against one snapshot

_COMPARE: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}
_ISO_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def matches(segment: SegmentFilter, snapshot: MemberSnapshot, *, now: datetime, today: date) -> bool:
    """Whether the member in ``snapshot`` is in the segment, at ``now`` (aware) and on ``today``."""
    return _matches(segment, snapshot, _to_millis(now), today)


def _matches(segment: SegmentFilter, snapshot: MemberSnapshot, now: datetime, today: date) -> bool:  # noqa: PLR0911
    match segment:
        case TagsCondition():
            tags = set(snapshot.tags)
            return (
                tags.issuperset(segment.all)
                and (not segment.any or not tags.isdisjoint(segment.any))
                and tags.isdisjoint(segment.none)
            )
        case AttributeCondition():
            return _attribute_matches(segment, snapshot.attributes.get(segment.key))
        case AgeCondition():
            age = _age(snapshot.attributes.get(BIRTH_DATE_ATTRIBUTE), today)
            # No minimum still means "born by today": a birth date in the future is not a real one.
            return (
                age is not None and age >= (segment.min or 0) and (segment.max is None or age <= segment.max)
            )
        case FollowCondition():
            return snapshot.follow_state == segment.state
        case LastInteractionCondition():
            if snapshot.last_interaction_at is None:
                return False
            # MongoDB keeps whole milliseconds of the stored time; as ``now`` (so every threshold) is cut to
            # whole milliseconds too, comparing the exact time gives the same answers.
            at = snapshot.last_interaction_at
            return (segment.within_days is None or at >= now - timedelta(days=segment.within_days)) and (
                segment.older_than_days is None or at < now - timedelta(days=segment.older_than_days)
            )
        case RfmCondition():
            return snapshot.rfm_segment in segment.segments
        case AndCondition():
            return all(_matches(child, snapshot, now, today) for child in segment.conditions)
        case OrCondition():
            return any(_matches(child, snapshot, now, today) for child in segment.conditions)
        case NotCondition():
            return not _matches(segment.condition, snapshot, now, today)
        case _:
            assert_never(segment)


def _attribute_matches(condition: AttributeCondition, value: object) -> bool:
    if condition.exists is not None:
        return (value is not None) is condition.exists
    if value is None:
        return False
    if condition.equals is not None:
        return _same(value, condition.equals)
    if condition.in_ is not None:
        return any(_same(value, candidate) for candidate in condition.in_)
    return all(_in_order(value, name, bound) for name, bound in condition.bounds())


def _same(value: object, wanted: bool | int | float | str) -> bool:
    """Equality as MongoDB sees it: numbers by value (``1 == 1.0``), but never a bool with a number."""
    if isinstance(wanted, bool) or isinstance(value, bool):
        return type(value) is type(wanted) and value == wanted
    if isinstance(wanted, str) or isinstance(value, str):
        return isinstance(value, str) and isinstance(wanted, str) and value == wanted
    return isinstance(value, int | float) and value == wanted


def _in_order(value: object, name: str, bound: int | float | str) -> bool:
    """A range test as MongoDB does it: only values of the bound's kind (number or string) can match."""
    if isinstance(bound, str):
        comparable = isinstance(value, str)
    else:
        comparable = isinstance(value, int | float) and not isinstance(value, bool)
    return comparable and _COMPARE[name](value, bound)


def _age(birth_date: object, today: date) -> int | None:
    """Whole years since a ``YYYY-MM-DD`` birth date, or ``None`` if it is not a real date in that form."""
    if not isinstance(birth_date, str) or not _ISO_DATE.fullmatch(birth_date):
        return None
    try:
        born = date.fromisoformat(birth_date)
    except ValueError:
        return None
    had_birthday = (today.month, today.day) >= (born.month, born.day)
    return today.year - born.year - (0 if had_birthday else 1)


def _to_millis(moment: datetime) -> datetime:
    """``moment`` in UTC, cut to whole milliseconds as BSON stores it (pymongo truncates)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a segment filter needs an aware datetime (with a timezone)")
    utc = moment.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond // 1000 * 1000)


# ----------------------------------------------------------------------------------------------------
# Translating to a MongoDB query


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldMap:
    """Where a collection stores each snapshot field (dotted paths). ``attributes=""``: keys at top level."""

    follow_state: str = "follow_state"
    tags: str = "tags"
    """An array of tag names."""
    attributes: str = "attributes"
    last_interaction_at: str = "last_interaction_at"
    rfm_segment: str = "rfm_segment"

    def __post_init__(self) -> None:
        for name in ("follow_state", "tags", "attributes", "last_interaction_at", "rfm_segment"):
            path: str = getattr(self, name)
            if (not path and name != "attributes") or path.startswith("$") or "\x00" in path:
                raise ValueError(f"FieldMap.{name}: {path!r} is not a usable field path")

    def attribute(self, key: str) -> str:
        """The path of attribute ``key``."""
        return f"{self.attributes}.{key}" if self.attributes else key


DEFAULT_FIELDS: Final = FieldMap()

# "YYYY-MM-DD" for every real date from 0001-01-01 to 9999-12-31 (Python's date range), nothing else. MongoDB
# cannot parse a date in a query without $expr, so the calendar is spelled out: months of 31 and 30 days,
# 28 February always, 29 February in leap years (divisible by 4 but not by 100, or by 400; year 0000 is out).
_YEAR: Final = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR: Final = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY: Final = (
    "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
DATE_PATTERN: Final = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
"""A regular expression (Python, Go/RE2 and PCRE alike) matching exactly the real dates as ``YYYY-MM-DD``."""
# Anchored with \z, not $: MongoDB's PCRE lets $ match before a final newline ("1990-01-01\n"); FerretDB's Go
# regexp does not. \z means the very end in both (Python's re spells it \Z, hence the bare DATE_PATTERN).
_MONGO_DATE_REGEX: Final = f"^{DATE_PATTERN}\\z"


# Checked against FerretDB 1.24.2 (SQLite handler) by tests/test_segments_mongo.py; it agrees with MongoDB
# on everything used here: {$eq: null} and {$in: [..., null]} match a missing field, {$ne: null} does not;
# 1 equals 1.0 but not true; a range only matches values of its bound's type; $nor, $all and $regex (with \z)
# work; dates are stored and compared to the millisecond; an empty $and/$or/$nor array is an error (as in
# MongoDB), so and/or always have a condition. The one difference found is the regex engine (Go RE2, not
# PCRE): its $ is the very end of the string, where PCRE's $ also matches before a final newline; hence \z.
# Cost: FerretDB 1.24 on SQLite evaluates filters in Go over every document of the collection (its explain
# says filterPushdown: false and a full SCAN, even on an indexed field): 20-40 ms per query over a few
# hundred documents on a small machine.
def to_mongo_query(
    segment: SegmentFilter, *, now: datetime, today: date, fields: FieldMap = DEFAULT_FIELDS
) -> dict[str, Any]:
    """A MongoDB query document selecting the stored snapshots that :func:`matches` the filter.

    Documents keep the snapshot's fields at the paths in ``fields``: the follow state's value, tag names as
    an array, attributes as a sub-document, ``last_interaction_at`` as a BSON date. A missing field reads as
    the snapshot's default (unknown follow state, no tags, no attributes, never interacted, no RFM segment).
    """
    return _query(segment, _to_millis(now), today, fields)


def _query(segment: SegmentFilter, now: datetime, today: date, fields: FieldMap) -> dict[str, Any]:  # noqa: PLR0911
    match segment:
        case TagsCondition():
            return {fields.tags: _tags_query(segment)}
        case AttributeCondition():
            return {fields.attribute(segment.key): _attribute_query(segment)}
        case AgeCondition():
            return {fields.attribute(BIRTH_DATE_ATTRIBUTE): _age_query(segment, today)}
        case FollowCondition():
            if segment.state is FollowState.UNKNOWN:
                return {fields.follow_state: {"$in": [FollowState.UNKNOWN.value, None]}}
            return {fields.follow_state: {"$eq": segment.state.value}}
        case LastInteractionCondition():
            return {fields.last_interaction_at: _last_interaction_query(segment, now)}
        case RfmCondition():
            return {fields.rfm_segment: {"$in": list(dict.fromkeys(segment.segments))}}
        case AndCondition():
            return {"$and": [_query(child, now, today, fields) for child in segment.conditions]}
        case OrCondition():
            return {"$or": [_query(child, now, today, fields) for child in segment.conditions]}
        case NotCondition():
            # $nor of one query is its exact negation (a field-level $not cannot negate $and/$or).
            return {"$nor": [_query(segment.condition, now, today, fields)]}
        case _:
            assert_never(segment)


def _tags_query(condition: TagsCondition) -> dict[str, Any]:
    # An empty $all matches nothing in MongoDB, so each operator only when its list is non-empty.
    query: dict[str, Any] = {}
    for name, tags in (("$all", condition.all), ("$in", condition.any), ("$nin", condition.none)):
        if tags:
            query[name] = list(dict.fromkeys(tags))
    return query


def _last_interaction_query(condition: LastInteractionCondition, now: datetime) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if condition.within_days is not None:
        query["$gte"] = now - timedelta(days=condition.within_days)
    if condition.older_than_days is not None:
        query["$lt"] = now - timedelta(days=condition.older_than_days)
    return query


def _attribute_query(condition: AttributeCondition) -> dict[str, Any]:
    if condition.exists is not None:
        # {$ne: null} is "present and not null", {$eq: null} is "missing or null": null counts as absent.
        return {"$ne": None} if condition.exists else {"$eq": None}
    if condition.equals is not None:
        return {"$eq": condition.equals}
    if condition.in_ is not None:
        return {"$in": list(condition.in_)}
    return {f"${name}": bound for name, bound in condition.bounds()}


def _age_query(condition: AgeCondition, today: date) -> dict[str, Any]:
    # age >= n  <=>  born on or before today's month and day n years ago; comparing "YYYY-MM-DD" strings is
    # comparing (year, month, day), so a 29 February "bound" in a common year works as it is (nobody is born
    # on it, and the dates around it sort correctly). age <= n  <=>  not age >= n + 1.
    query: dict[str, Any] = {"$regex": _MONGO_DATE_REGEX, "$lte": _years_before(today, condition.min or 0)}
    if condition.max is not None:
        query["$gt"] = _years_before(today, condition.max + 1)
    return query


def _years_before(today: date, years: int) -> str:
    return f"{today.year - years:04d}-{today.month:02d}-{today.day:02d}"
