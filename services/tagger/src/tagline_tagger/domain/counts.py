"""A channel's member counts (tag coverage) kept as counters, and each member's share in them. Pure: no I/O.

Counting a million members on every coverage request reads every document (no server answers a count from
an index on FerretDB), so the pipeline keeps the figures itself: every write of a member adds the difference
between its new :class:`Share` and the one the counters hold for it (:func:`difference`).

What makes the counters exact, also when a batch is written and then replayed after a crash, is decided by
offsets (the pipeline does the I/O, ``tagline_tagger.pipeline``):

* the channel's counters record ``through``: per member-topic partition, the offset up to which the writes
  of members are counted;
* a member document records the offsets of the inputs applied to it (``Member.offsets``) and ``counted``, the
  share the counters held for it *before* its last write. Its last write is counted once ``through`` has
  reached its offsets (:func:`absorbed`); until then the counters hold ``counted`` for it, not its current
  share;
* a batch writes its members first, then adds the differences of the members whose offsets the batch's
  ``through`` will cover, and ``through`` with them in one update. A crash between the two replays the
  batch: its members' writes are not absorbed, so their differences are taken again from ``counted``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tagline_contracts.members import FollowState

if TYPE_CHECKING:
    from tagline_tagger.domain.member import Member

FOLLOWED = FollowState.FOLLOWED.value

Counter = tuple[str, str]
"""One counter of a channel: ``("members", <follow state>)``, ``("tagged", "")`` (followed members with at
least one active tag), ``("by_tag", <tag>)`` and ``("by_origin", <origin>)`` (followed members with such an
active tag)."""

TAGGED: Counter = ("tagged", "")


@dataclass(frozen=True, slots=True)
class Share:
    """What one member adds to its channel's counters: its follow state, active tags and their origins."""

    state: str
    tags: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()

    @classmethod
    def of(cls, member: Member, now: datetime) -> Share:
        """The member's share as written at ``now`` (the member document's ``follow_state``, ``tags`` and
        ``tag_origins`` are these values)."""
        active = [record for record in member.tags.values() if record.active(now)]
        return cls(
            member.follow_state.value,
            tuple(sorted(record.name for record in active)),
            tuple(sorted({record.origin.value for record in active})),
        )

    def counters(self) -> list[Counter]:
        """The counters this member adds one to (tags count for followed members only: coverage is a share
        of the friends)."""
        found: list[Counter] = [("members", self.state)]
        if self.state == FOLLOWED:
            if self.tags:
                found.append(TAGGED)
            found += [("by_tag", name) for name in self.tags]
            found += [("by_origin", origin) for origin in self.origins]
        return found

    def to_doc(self) -> dict[str, Any]:
        return {"state": self.state, "tags": list(self.tags), "origins": list(self.origins)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> Share | None:
        if doc is None:
            return None
        return cls(doc["state"], tuple(doc.get("tags") or ()), tuple(doc.get("origins") or ()))


def difference(before: Share | None, after: Share | None) -> dict[Counter, int]:
    """What changes in the counters when a member's share goes from ``before`` to ``after`` (no zeros)."""
    delta: dict[Counter, int] = {}
    for counter in before.counters() if before else ():
        delta[counter] = delta.get(counter, 0) - 1
    for counter in after.counters() if after else ():
        delta[counter] = delta.get(counter, 0) + 1
    return {counter: n for counter, n in delta.items() if n}


def add(total: dict[Counter, int], delta: Mapping[Counter, int]) -> None:
    """Add ``delta`` into ``total`` in place, dropping counters that come to zero."""
    for counter, n in delta.items():
        value = total.get(counter, 0) + n
        if value:
            total[counter] = value
        else:
            total.pop(counter, None)


def absorbed(offsets: Mapping[str, int], through: Mapping[str, int]) -> bool:
    """Whether the counters (counted ``through`` these offsets per partition) include the write of a member
    whose applied inputs reached ``offsets``."""
    return all(offset <= through.get(position, -1) for position, offset in offsets.items())


def advance(through: dict[str, int], offsets: Iterable[tuple[str, int]]) -> None:
    """``through`` moved up to each ``(position, offset)`` (never back)."""
    for position, offset in offsets:
        if offset > through.get(position, -1):
            through[position] = offset


@dataclass(frozen=True)
class MemberCounts:
    """A channel's counters as stored: members per follow state, the tag coverage of followed ones, and the
    offsets they are counted ``through``; ``since``: when the first member was counted."""

    members: Mapping[str, int]
    tagged: int
    by_tag: Mapping[str, int]
    by_origin: Mapping[str, int]
    through: Mapping[str, int]
    since: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.members.values())

    @classmethod
    def empty(cls) -> MemberCounts:
        return cls({}, 0, {}, {}, {})
