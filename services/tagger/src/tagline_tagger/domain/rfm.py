"""RFM scoring: scores 1-5 for recency, frequency and monetary value, and a named segment.

The tagger keeps three raw values per buyer (:class:`RfmValues`). To score them it first makes, for all
buyers of a channel at once, four ascending cut points per dimension (:func:`fit`, giving an
:class:`RfmModel`); a score counts the cut points a value is past (frequency and monetary: ``1 +`` the cut
points below the value; recency, where fewer days is better: ``5 -`` them), so it only depends on the value
and the model, never on a member's rank. Scoring a whole channel goes through
:func:`score_all`, which works on three parallel lists and shares the 125 possible :class:`RfmScore`
objects: fitting and scoring a million buyers takes well under a second in CPython.

**Two ways to make the cut points** (the model's ``scoring`` says which one it used):

* ``quintiles`` when the channel has at least ``min_population`` buyers (:data:`MIN_QUINTILE_POPULATION`,
  100, by default): each score holds a fifth of the buyers. 100 buyers put 20 in each score, so one buyer
  more or less moves a cut point by at most one buyer's value; below that a quintile is a handful of people
  and the scores are noise (four buyers who ordered minutes apart got every score from 1 to 5, and the one
  who ordered two minutes earlier was "At Risk").
* ``absolute`` below it (:class:`AbsoluteThresholds`, :data:`DEFAULT_THRESHOLDS`): fixed bands that mean the
  same whatever the rest of the population does::

      score                    5           4            3             2            1
      recency: whole days     <= 30       <= 90        <= 180        <= 365       more
      frequency: paid orders  >= 6        4-5          3             2            1
      monetary: NT$ (basis)   > 30,000    <= 30,000    <= 10,000     <= 3,000     <= 1,000

  Recency: a month, a quarter, half a year, a year; "30 days" is the window Taiwanese LINE OA practice
  calls active (e.g. friends who interacted within 30 days), and a buyer is only "Lost" / "At Risk" (R 1)
  after a year without an order. Frequency: the first repeat order is the step that matters most, so 1, 2
  and 3 orders each have their own score. Monetary: cumulative spend on the ladder common membership tiers
  use (NT$1,000 / 3,000 / 10,000 / 30,000, each about three times the last); it depends on the brand's
  price level more than the other two, which is why the thresholds are a setting
  (``TAGLINE_TAGGER_RFM_THRESHOLDS``).

**Quintile cut points** (one rule for all three dimensions, on the raw values: days, orders, NT$). Sort the
``n`` values; cut point ``k`` (1 to 4) should have ``b = round(k * n / 5)`` values below it, so it is placed
halfway between the ``b``-th and the ``b + 1``-th smallest value. For 1, 2, ..., 100 that is 20.5, 40.5,
60.5 and 80.5: twenty members in each quintile. When those two values are equal the cut point is that
value, and **a value exactly on a cut point counts on the side of the smaller values**: equal values always
get equal scores, and a tie straddling a quintile boundary lands entirely on the smaller side. For
frequency and monetary that is the worse side (with 70 % one-time buyers, every one-time buyer has F = 1);
for recency it is the better side (a big tie is a day many bought on: with everyone buying today, everyone
has R = 5, not R = 1). Populations under three members leave ``b`` at 0 for some cut points; such a cut
point goes just below the smallest value (everyone is beyond it), so with ``min_population`` 1 a lone
member scores 3 and two members score 2 and 4.

**Recency is counted in whole days** (24 hours; :func:`days_since`) from the last paid order to ``now``:
buyers of the same day are equally recent; minutes apart is not a difference RFM can act on.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, Final, Literal

from tagline_contracts.segments import RFM_SEGMENTS, RfmSegment

__all__ = [
    "DEFAULT_THRESHOLDS",
    "MIN_QUINTILE_POPULATION",
    "SEGMENT_RULES",
    "AbsoluteThresholds",
    "RfmModel",
    "RfmScore",
    "RfmValues",
    "Scoring",
    "SegmentRule",
    "days_since",
    "fit",
    "score_all",
    "segment_of",
]

_CUTS: Final = 4
_DAY: Final = timedelta(days=1)

Scoring = Literal["quintiles", "absolute"]
"""How a model's cut points were made: fitted to the population, or the fixed :class:`AbsoluteThresholds`."""

MIN_QUINTILE_POPULATION: Final = 100
"""Buyers a channel needs for quintile cut points (20 per score); below it the absolute thresholds apply."""


@dataclass(frozen=True, slots=True)
class RfmValues:
    """A buyer's raw RFM values, kept up to date from order events."""

    last_order_at: datetime
    """When the last paid order was paid (aware)."""
    orders: int
    """Paid orders."""
    monetary: float
    """Total spent, on the basis of ``tagline_contracts.orders.spend_basis`` (what was paid for the goods)."""


@dataclass(frozen=True, slots=True)
class RfmScore:
    """Scores 1-5, 5 the best (most recent, most orders, most money), and the segment they name."""

    recency: int
    frequency: int
    monetary: int
    segment: RfmSegment


def _check_cuts(owner: str, name: str, cuts: Sequence[float]) -> None:
    if not all(math.isfinite(cut) for cut in cuts) or list(cuts) != sorted(cuts):
        raise ValueError(f"{owner}.{name} cut points must be finite and ascending, got {list(cuts)}")


@dataclass(frozen=True, slots=True)
class AbsoluteThresholds:
    """The cut points used below the minimum population: four per dimension, ascending (see the module
    docstring for the defaults and why). A value on a cut point counts on the side of the smaller values:
    30 days is still R 5, 1 order is F 1, NT$1,000 is M 1."""

    recency_days: tuple[float, float, float, float] = (30, 90, 180, 365)
    """Whole days since the last paid order: up to the first is R 5, ..., beyond the last R 1."""
    frequency: tuple[float, float, float, float] = (1, 2, 3, 5)
    """Paid orders: up to the first is F 1, ..., beyond the last F 5."""
    monetary: tuple[float, float, float, float] = (1_000, 3_000, 10_000, 30_000)
    """Total spent (NT$): up to the first is M 1, ..., beyond the last M 5."""

    def __post_init__(self) -> None:
        for name in ("recency_days", "frequency", "monetary"):
            cuts = getattr(self, name)
            if len(cuts) != _CUTS:
                raise ValueError(f"AbsoluteThresholds.{name} needs {_CUTS} cut points, got {len(cuts)}")
            _check_cuts("AbsoluteThresholds", name, cuts)
            if cuts[0] < 0:
                raise ValueError(f"AbsoluteThresholds.{name} cut points cannot be negative, got {list(cuts)}")


DEFAULT_THRESHOLDS: Final = AbsoluteThresholds()

# ----------------------------------------------------------------------------------------------------
# Segments


@dataclass(frozen=True, slots=True)
class SegmentRule:
    """``segment`` for an R score in ``r_min..r_max`` and an FM score in ``fm_min..fm_max`` (inclusive)."""

    segment: RfmSegment
    r_min: int
    r_max: int
    fm_min: int
    fm_max: int

    def covers(self, r: int, fm: int) -> bool:
        return self.r_min <= r <= self.r_max and self.fm_min <= fm <= self.fm_max


SEGMENT_RULES: Final[tuple[SegmentRule, ...]] = (
    SegmentRule("Champions", 4, 5, 4, 5),
    SegmentRule("Loyal Customers", 2, 5, 3, 5),
    SegmentRule("New Customers", 4, 5, 1, 1),
    SegmentRule("Promising", 3, 4, 1, 1),
    SegmentRule("Potential Loyalist", 3, 5, 1, 3),
    SegmentRule("Need Attention", 2, 3, 2, 3),
    SegmentRule("About To Sleep", 2, 3, 1, 2),
    SegmentRule("Can't Lose Them", 1, 1, 4, 5),
    SegmentRule("At Risk", 1, 2, 2, 5),
    SegmentRule("Lost", 1, 2, 1, 2),
)
"""The segment table, on R and FM (the mean of F and M, halves rounded up: ``(f + m + 1) // 2``).

The first rule that covers ``(R, FM)`` wins. What each one ends up with, given those before it::

    Champions           R 4-5  FM 4-5
    Loyal Customers     R 2-5  FM 3-5   but not Champions
    New Customers       R 4-5  FM 1     recent, one small order (F = M = 1)
    Promising           R 3    FM 1     (R 4 FM 1 is New Customers)
    Potential Loyalist  R 3-5  FM 2
    Need Attention      R 2    FM 2
    About To Sleep      R 2    FM 1
    Can't Lose Them     R 1    FM 4-5
    At Risk             R 1    FM 2-3
    Lost                R 1    FM 1

Every one of the 25 (R, FM) pairs, so every one of the 125 (R, F, M) triples, is covered, and every
segment is reached.
"""


def _fm(f: int, m: int) -> int:
    return (f + m + 1) // 2


def _first_rule(r: int, fm: int) -> RfmSegment:
    for rule in SEGMENT_RULES:
        if rule.covers(r, fm):
            return rule.segment
    raise AssertionError(f"no RFM segment rule covers R {r} FM {fm}")  # pragma: no cover


def _index(r: int, f: int, m: int) -> int:
    """Position of (r, f, m) in :data:`_SCORES`."""
    return (r - 1) * 25 + (f - 1) * 5 + (m - 1)


_SCORES: Final[tuple[RfmScore, ...]] = tuple(
    RfmScore(r, f, m, _first_rule(r, _fm(f, m)))
    for r in range(1, 6)
    for f in range(1, 6)
    for m in range(1, 6)
)
"""All 125 scores, built (and checked for gaps) on import; shared by every scoring call."""

if {score.segment for score in _SCORES} != set(RFM_SEGMENTS):  # pragma: no cover
    raise AssertionError("SEGMENT_RULES must reach every RFM segment")


def segment_of(r: int, f: int, m: int) -> RfmSegment:
    """The segment for scores ``r``, ``f`` and ``m`` (each 1 to 5), by :data:`SEGMENT_RULES`."""
    for score in (r, f, m):
        if not 1 <= score <= 5:
            raise ValueError(f"RFM scores are 1 to 5, got ({r}, {f}, {m})")
    return _SCORES[_index(r, f, m)].segment


# ----------------------------------------------------------------------------------------------------
# The model


def days_since(at: datetime, now: datetime) -> int:
    """Whole days (24 hours, rounded down) from ``at`` to ``now``, both aware; 0 if ``at`` is later."""
    return max(0, (now - at) // _DAY)


@dataclass(frozen=True, slots=True)
class RfmModel:
    """Four cut points per dimension, ascending, made by :func:`fit` for one population.

    ``recency_days`` are in whole days since the last order: fewer days than a cut point is the better side.
    ``frequency`` and ``monetary``: more than a cut point is the better side. A value exactly on a cut
    point counts on the side of the smaller values. ``scoring`` says how the cut points were made:
    ``quintiles`` fitted to the ``population`` (at least ``min_population`` buyers), or the ``absolute``
    thresholds (fewer buyers than that).
    """

    recency_days: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]
    computed_at: datetime
    """The ``now`` the population's recency was measured at: the default ``now`` for :meth:`score`."""
    population: int
    scoring: Scoring
    min_population: int
    """The minimum population for quintiles when the model was made."""

    def __post_init__(self) -> None:
        if self.computed_at.tzinfo is None or self.computed_at.utcoffset() is None:
            raise ValueError("RfmModel.computed_at must be an aware datetime")
        if self.population < 0:
            raise ValueError(f"RfmModel.population cannot be negative, got {self.population}")
        if self.min_population < 1:
            raise ValueError(f"RfmModel.min_population must be at least 1, got {self.min_population}")
        wanted: Scoring = "quintiles" if self.population >= self.min_population else "absolute"
        if self.scoring != wanted:
            raise ValueError(
                f"RfmModel.scoring must be {wanted!r} for a population of {self.population} with a minimum "
                f"of {self.min_population} for quintiles, got {self.scoring!r}"
            )
        for name in ("recency_days", "frequency", "monetary"):
            cuts = getattr(self, name)
            if len(cuts) != _CUTS:
                raise ValueError(f"RfmModel.{name} needs {_CUTS} cut points, got {len(cuts)}")
            _check_cuts("RfmModel", name, cuts)

    @property
    def model_id(self) -> str:
        """``rfm-`` and ``computed_at`` in UTC to the millisecond, e.g. ``rfm-20261123T100000.123Z``.

        Milliseconds, because that is what BSON keeps: a model read back from MongoDB has the same id.
        """
        at = self.computed_at.astimezone(UTC)
        return f"rfm-{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z"

    def score(self, values: RfmValues, now: datetime | None = None) -> RfmScore:
        """Scores for one member, recency measured at ``now`` (default: :attr:`computed_at`)."""
        days = days_since(values.last_order_at, self.computed_at if now is None else now)
        return _SCORES[
            (_CUTS - bisect_left(self.recency_days, days)) * 25
            + bisect_left(self.frequency, values.orders) * 5
            + bisect_left(self.monetary, values.monetary)
        ]

    def to_doc(self) -> dict[str, Any]:
        """A dict for JSON or BSON storage: cut points as lists of floats, ``computed_at`` as a datetime."""
        return {
            "model_id": self.model_id,
            "computed_at": self.computed_at,
            "population": self.population,
            "scoring": self.scoring,
            "min_population": self.min_population,
            "recency_days": list(self.recency_days),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RfmModel:
        """The model :meth:`to_doc` wrote (``model_id`` is derived, so it is not read back).

        A document from before ``scoring`` existed holds quintiles fitted without a minimum (read as
        ``min_population`` 1), or, for a channel without buyers, no cut points at all (read as the default
        absolute thresholds).
        """
        computed_at = doc["computed_at"]
        if not isinstance(computed_at, datetime):
            raise TypeError(f"RfmModel.computed_at must be a datetime, got {type(computed_at).__name__}")
        population = int(doc["population"])
        if "scoring" not in doc and population == 0:
            return _absolute(DEFAULT_THRESHOLDS, computed_at, population=0, min_population=1)
        return cls(
            recency_days=_floats(doc["recency_days"]),
            frequency=_floats(doc["frequency"]),
            monetary=_floats(doc["monetary"]),
            computed_at=computed_at,
            population=population,
            scoring=doc.get("scoring", "quintiles"),
            min_population=int(doc.get("min_population", 1)),
        )


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


def _absolute(
    thresholds: AbsoluteThresholds, now: datetime, *, population: int, min_population: int
) -> RfmModel:
    return RfmModel(
        recency_days=_floats(thresholds.recency_days),
        frequency=_floats(thresholds.frequency),
        monetary=_floats(thresholds.monetary),
        computed_at=now,
        population=population,
        scoring="absolute",
        min_population=min_population,
    )


# ----------------------------------------------------------------------------------------------------
# Fitting and scoring a population


def fit(
    recency_days: Sequence[float],
    orders: Sequence[int],
    monetary: Sequence[float],
    now: datetime,
    *,
    min_population: int = MIN_QUINTILE_POPULATION,
    thresholds: AbsoluteThresholds = DEFAULT_THRESHOLDS,
) -> RfmModel:
    """The model for a population given as three parallel lists: quintile cut points when it has at least
    ``min_population`` members, else ``thresholds``.

    ``recency_days[i]`` (see :func:`days_since`, measured at ``now``), ``orders[i]`` and ``monetary[i]`` are
    member ``i``'s values. All must be finite numbers.
    """
    n = _same_length(recency_days, orders, monetary)
    if min_population < 1:
        raise ValueError(f"min_population must be at least 1, got {min_population}")
    for name, column in (("recency_days", recency_days), ("orders", orders), ("monetary", monetary)):
        # A NaN would silently break sorting; sum is C-fast and NaN/infinite if any value is.
        if not math.isfinite(sum(column)):
            raise ValueError(f"RFM {name} must all be finite numbers")
    if n < min_population:
        return _absolute(thresholds, now, population=n, min_population=min_population)
    return RfmModel(
        recency_days=_cut_points(sorted(recency_days)),
        frequency=_cut_points(sorted(orders)),
        monetary=_cut_points(sorted(monetary)),
        computed_at=now,
        population=n,
        scoring="quintiles",
        min_population=min_population,
    )


def _cut_points(ordered: Sequence[float]) -> tuple[float, ...]:
    """Four quintile cut points for ascending values; ``b`` values at or below cut point ``k`` (see the module
    docstring)."""
    n = len(ordered)
    cuts: list[float] = []
    for k in range(1, _CUTS + 1):
        below = (2 * k * n + 5) // 10  # round(k * n / 5); never exactly a half, as 2kn is even
        if below == 0:
            cut = math.nextafter(float(ordered[0]), -math.inf)
        elif below == n:
            cut = float(ordered[-1])
        else:
            low, high = float(ordered[below - 1]), float(ordered[below])
            cut = low / 2 + high / 2  # no overflow, whatever the signs
            if not low <= cut < high:  # adjacent floats: the midpoint can round onto either of them
                cut = low
        cuts.append(cut)
    return tuple(cuts)


def score_all(
    model: RfmModel,
    recency_days: Sequence[float],
    orders: Sequence[int],
    monetary: Sequence[float],
) -> list[RfmScore]:
    """Scores for a population given as three parallel lists (as for :func:`fit`), in the same order.

    ``recency_days`` must be measured at the moment the scores are for (usually ``model.computed_at``).
    The :class:`RfmScore` objects are shared (there are only 125), not one per member.
    """
    _same_length(recency_days, orders, monetary)
    scores = _SCORES
    r_past = map(bisect_left, repeat(model.recency_days), recency_days)
    f_past = map(bisect_left, repeat(model.frequency), orders)
    m_past = map(bisect_left, repeat(model.monetary), monetary)
    return [
        scores[100 - r * 25 + f * 5 + m]  # (_CUTS - r) * 25 + f * 5 + m
        for r, f, m in zip(r_past, f_past, m_past, strict=True)
    ]


def _same_length(recency_days: Sequence[float], orders: Sequence[int], monetary: Sequence[float]) -> int:
    n = len(recency_days)
    if len(orders) != n or len(monetary) != n:
        raise ValueError(
            f"RFM columns differ in length: {n} recency, {len(orders)} orders, {len(monetary)} monetary"
        )
    return n
