"""RFM scoring: quintile scores 1-5 for recency, frequency and monetary value, and a named segment.

The tagger keeps three raw values per buyer (:class:`RfmValues`). To score them it first learns, from all
buyers of a channel at once, four cut points per dimension (:func:`fit`, giving an :class:`RfmModel`); a
score is then ``1 +`` the number of cut points the value is beyond, so it only depends on the value and
the model, never on a member's rank. Scoring a whole channel goes through :func:`score_all`, which works on
three parallel lists and shares the 125 possible :class:`RfmScore` objects: fitting and scoring a million
buyers takes well under a second in CPython.

Cut points (for frequency and monetary, where more is better; recency is the mirror image, fewer days
being better). Sort the ``n`` values; cut point ``k`` (1 to 4) should have ``b = round(k * n / 5)`` values
below it, so it is placed halfway between the ``b``-th and the ``b + 1``-th smallest value. For 1, 2, …,
100 that is 20.5, 40.5, 60.5 and 80.5: twenty members in each quintile. When those two values are equal
the cut point is that value, and a value exactly on a cut point counts as below it (the worse side): equal
values always get equal scores, and a tie straddling a quintile boundary lands entirely in the lower
quintile (with 70 % one-time buyers, every one-time buyer has F = 1). Populations under three members
leave ``b`` at 0 for some cut points; such a cut point goes just below the smallest value (everyone is
beyond it), so a lone member scores 3 and two members score 2 and 4. An empty population has no cut
points, and its model scores everyone 3.

Recency is measured in days (fractional, see :func:`days_since`) from the last paid order to ``now``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, Final

from tagline_contracts.segments import RFM_SEGMENTS, RfmSegment

__all__ = [
    "SEGMENT_RULES",
    "RfmModel",
    "RfmScore",
    "RfmValues",
    "SegmentRule",
    "days_since",
    "fit",
    "score_all",
    "segment_of",
]

_CUTS: Final = 4
_SECONDS_PER_DAY: Final = 86_400.0


@dataclass(frozen=True, slots=True)
class RfmValues:
    """A buyer's raw RFM values, kept up to date from order events."""

    last_order_at: datetime
    """When the last paid order was paid (aware)."""
    orders: int
    """Paid orders."""
    monetary: float
    """Total paid."""


@dataclass(frozen=True, slots=True)
class RfmScore:
    """Quintile scores, 5 the best (most recent, most orders, most money), and the segment they name."""

    recency: int
    frequency: int
    monetary: int
    segment: RfmSegment


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
_MIDDLE: Final = _SCORES[_index(3, 3, 3)]

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


def days_since(at: datetime, now: datetime) -> float:
    """Days (fractional) from ``at`` to ``now``, both aware; negative if ``at`` is after ``now``."""
    return (now - at).total_seconds() / _SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class RfmModel:
    """Cut points learned from one population by :func:`fit`: four per dimension, ascending.

    ``recency_days`` are in days since the last order: fewer days than a cut point is the better side.
    ``frequency`` and ``monetary``: more than a cut point is the better side. A value exactly on a cut
    point is on its worse side. An empty population (``population == 0``) has no cut points at all, and
    everyone scores 3 on every dimension.
    """

    recency_days: tuple[float, ...]
    frequency: tuple[float, ...]
    monetary: tuple[float, ...]
    computed_at: datetime
    """The ``now`` the population's recency was measured at: the default ``now`` for :meth:`score`."""
    population: int

    def __post_init__(self) -> None:
        if self.computed_at.tzinfo is None or self.computed_at.utcoffset() is None:
            raise ValueError("RfmModel.computed_at must be an aware datetime")
        if self.population < 0:
            raise ValueError(f"RfmModel.population cannot be negative, got {self.population}")
        wanted = 0 if self.population == 0 else _CUTS
        for name, cuts in (
            ("recency_days", self.recency_days),
            ("frequency", self.frequency),
            ("monetary", self.monetary),
        ):
            if len(cuts) != wanted:
                raise ValueError(
                    f"RfmModel.{name} needs {wanted} cut points for a population of {self.population}, "
                    f"got {len(cuts)}"
                )
            if not all(math.isfinite(cut) for cut in cuts) or list(cuts) != sorted(cuts):
                raise ValueError(f"RfmModel.{name} cut points must be finite and ascending, got {cuts}")

    @property
    def model_id(self) -> str:
        """``rfm-`` and ``computed_at`` in UTC to the millisecond, e.g. ``rfm-20261123T100000.123Z``.

        Milliseconds, because that is what BSON keeps: a model read back from MongoDB has the same id.
        """
        at = self.computed_at.astimezone(UTC)
        return f"rfm-{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z"

    @property
    def empty(self) -> bool:
        """Learned from nobody: every score is 3."""
        return self.population == 0

    def score(self, values: RfmValues, now: datetime | None = None) -> RfmScore:
        """Scores for one member, recency measured at ``now`` (default: :attr:`computed_at`)."""
        if self.empty:
            return _MIDDLE
        days = days_since(values.last_order_at, self.computed_at if now is None else now)
        return _SCORES[
            (_CUTS - bisect_right(self.recency_days, days)) * 25
            + bisect_left(self.frequency, values.orders) * 5
            + bisect_left(self.monetary, values.monetary)
        ]

    def to_doc(self) -> dict[str, Any]:
        """A dict for JSON or BSON storage: cut points as lists of floats, ``computed_at`` as a datetime."""
        return {
            "model_id": self.model_id,
            "computed_at": self.computed_at,
            "population": self.population,
            "recency_days": list(self.recency_days),
            "frequency": list(self.frequency),
            "monetary": list(self.monetary),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RfmModel:
        """The model :meth:`to_doc` wrote (``model_id`` is derived, so it is not read back)."""
        computed_at = doc["computed_at"]
        if not isinstance(computed_at, datetime):
            raise TypeError(f"RfmModel.computed_at must be a datetime, got {type(computed_at).__name__}")
        return cls(
            recency_days=_floats(doc["recency_days"]),
            frequency=_floats(doc["frequency"]),
            monetary=_floats(doc["monetary"]),
            computed_at=computed_at,
            population=int(doc["population"]),
        )


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


# ----------------------------------------------------------------------------------------------------
# Fitting and scoring a population


def fit(
    recency_days: Sequence[float],
    orders: Sequence[int],
    monetary: Sequence[float],
    now: datetime,
) -> RfmModel:
    """Learn the quintile cut points from a population given as three parallel lists.

    ``recency_days[i]`` (see :func:`days_since`, measured at ``now``), ``orders[i]`` and ``monetary[i]`` are
    member ``i``'s values. All must be finite numbers.
    """
    n = _same_length(recency_days, orders, monetary)
    if n == 0:
        return RfmModel((), (), (), computed_at=now, population=0)
    for name, column in (("recency_days", recency_days), ("orders", orders), ("monetary", monetary)):
        # A NaN would silently break sorting; sum is C-fast and NaN/infinite if any value is.
        if not math.isfinite(sum(column)):
            raise ValueError(f"RFM {name} must all be finite numbers")
    # Fewer days is better: cut the negated days like the other two, then turn them back into days.
    recency = _cut_points(sorted([-days for days in recency_days]))
    return RfmModel(
        recency_days=tuple(-cut for cut in reversed(recency)),
        frequency=_cut_points(sorted(orders)),
        monetary=_cut_points(sorted(monetary)),
        computed_at=now,
        population=n,
    )


def _cut_points(ordered: Sequence[float]) -> tuple[float, ...]:
    """Four cut points for ascending values, more being better (see the module docstring)."""
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
    n = _same_length(recency_days, orders, monetary)
    if model.empty:
        return [_MIDDLE] * n
    scores = _SCORES
    r_worse = map(bisect_right, repeat(model.recency_days), recency_days)
    f_better = map(bisect_left, repeat(model.frequency), orders)
    m_better = map(bisect_left, repeat(model.monetary), monetary)
    return [
        scores[100 - r * 25 + f * 5 + m]  # (_CUTS - r) * 25 + f * 5 + m
        for r, f, m in zip(r_worse, f_better, m_better, strict=True)
    ]


def _same_length(recency_days: Sequence[float], orders: Sequence[int], monetary: Sequence[float]) -> int:
    n = len(recency_days)
    if len(orders) != n or len(monetary) != n:
        raise ValueError(
            f"RFM columns differ in length: {n} recency, {len(orders)} orders, {len(monetary)} monetary"
        )
    return n
