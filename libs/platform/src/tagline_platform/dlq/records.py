"""The pure part of the dead-letter tool: topic names, record selection, replay records and the text shown.

No I/O here; :mod:`tagline_platform.dlq.client` reads and writes Kafka.

A replayed record carries three headers, so a replay (and a replay of a replay) is visible on the topic and
the tool does not replay one dead letter twice unless told to:

* ``tagline-replay-of``: ``<dead-letter topic>:<partition>:<offset>`` of the dead letter it replays;
* ``tagline-replayed-at``: when (ISO 8601, UTC);
* ``tagline-replay-generation``: 1 for the replay of a record that was not itself a replay, n + 1 for the
  replay of a generation-n replay (it failed again and was dead-lettered again).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.catalog import is_dlq
from tagline_contracts.deadletter import DeadLetter, as_text

REPLAY_OF = "tagline-replay-of"
REPLAYED_AT = "tagline-replayed-at"
REPLAY_GENERATION = "tagline-replay-generation"
REPLAY_HEADERS = frozenset({REPLAY_OF, REPLAYED_AT, REPLAY_GENERATION})

Headers = tuple[tuple[str, bytes], ...]


# ---- names ---------------------------------------------------------------------------------------------
def dlq_topic(name: str, namespace: str = "") -> str:
    """The physical dead-letter topic an operator means by ``name``.

    ``name`` may be the dead-letter topic or the topic it belongs to, with or without the namespace:
    ``send.requests.v1``, ``send.requests.dlq.v1`` and ``<ns>send.requests.dlq.v1`` all name
    ``<ns>send.requests.dlq.v1``.
    """
    logical = name.removeprefix(namespace) if namespace else name
    return f"{namespace}{logical if is_dlq(logical) else topics.dlq(logical)}"


def all_dlq_topics(namespace: str = "") -> list[str]:
    """The physical dead-letter topics of every topic in :data:`tagline_contracts.topics.ALL`."""
    return sorted(f"{namespace}{topics.dlq(name)}" for name in topics.ALL)


# ---- records -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class Position:
    partition: int
    offset: int

    @classmethod
    def parse(cls, text: str) -> Position:
        """``"<partition>:<offset>"`` → :class:`Position`."""
        partition, sep, offset = text.strip().partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise ValueError(f"{text!r} is not <partition>:<offset> (e.g. 0:42)")
        return cls(int(partition), int(offset))

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What the tool keeps of a consumed record (of a dead-letter topic or an original topic)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    @classmethod
    def of(cls, record: Any) -> KafkaRecord:
        """From an ``aiokafka.ConsumerRecord``."""
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.timestamp,
            record.key,
            record.value,
            tuple((name, bytes(value)) for name, value in record.headers or ()),
        )

    @property
    def position(self) -> Position:
        return Position(self.partition, self.offset)

    @property
    def ref(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def time(self) -> datetime | None:
        return None if self.timestamp_ms is None else datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name``, if any."""
        found = [value for key, value in self.headers if key == name]
        return found[-1] if found else None


@dataclass(frozen=True, slots=True)
class Entry:
    """One record of a dead-letter topic and the :class:`DeadLetter` in it (``problem`` if there is none)."""

    record: KafkaRecord
    letter: DeadLetter | None
    problem: str | None = None

    @classmethod
    def of(cls, record: KafkaRecord) -> Entry:
        try:
            return cls(record, DeadLetter.model_validate_json(record.value or b""))
        except ValidationError as exc:
            return cls(record, None, f"not a DeadLetter: {exc.error_count()} validation errors")

    @property
    def time(self) -> datetime | None:
        """When it was dead-lettered: the record's timestamp, else the letter's ``failed_at``."""
        return self.record.time or (self.letter.failed_at if self.letter else None)

    @property
    def original_position(self) -> Position | None:
        letter = self.letter
        if letter is None or letter.partition is None or letter.offset is None:
            return None
        return Position(letter.partition, letter.offset)


# ---- selection ---------------------------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from ``now`` (``90m``, ``2h``, ``3d``) or an ISO 8601 time (UTC)."""
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (90m, 2h, 3d) nor an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def select(
    entries: Iterable[Entry],
    *,
    positions: Iterable[Position] | None = None,
    since: datetime | None = None,
    consumer: str | None = None,
) -> list[Entry]:
    """The entries at ``positions`` (all if None), dead-lettered at or after ``since``, by ``consumer``;
    oldest first (by time, then partition and offset)."""
    wanted = None if positions is None else set(positions)
    chosen = [
        e
        for e in entries
        if (wanted is None or e.record.position in wanted)
        and (since is None or (e.time is not None and e.time >= since))
        and (consumer is None or (e.letter is not None and e.letter.consumer == consumer))
    ]
    return sorted(chosen, key=_chronological)


def newest(entries: Iterable[Entry], limit: int) -> list[Entry]:
    """The ``limit`` most recent entries, newest first."""
    return sorted(entries, key=_chronological, reverse=True)[:limit]


def _chronological(entry: Entry) -> tuple[float, int, int]:
    time = entry.time
    return (time.timestamp() if time else 0.0, entry.record.partition, entry.record.offset)


# ---- replay --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Replay:
    """The record that replays ``source`` on ``topic``."""

    source: Entry
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    generation: int
    exact: bool
    """Whether key, value and headers are the original record's (else rebuilt from the dead letter: the
    original headers are lost, and bytes that were not UTF-8 stay ``\\x`` escapes)."""


class NotReplayable(ValueError):
    """A dead-letter record without a :class:`DeadLetter` in it."""


def plan_replay(entry: Entry, original: KafkaRecord | None, now: datetime) -> Replay:
    """The record to publish for ``entry``: the refused record again (its own key, value and headers when
    ``original``, the record still on the topic, is given and matches the dead letter), plus the replay
    headers. It goes to the topic the record was refused from (physical name, as in the dead letter)."""
    letter = entry.letter
    if letter is None:
        raise NotReplayable(f"{entry.record.ref}: {entry.problem}")
    exact = original is not None and matches(letter, original)
    if original is not None and exact:
        key, value, kept = original.key, original.value or b"", original.headers
    else:
        key = None if letter.key is None else letter.key.encode()
        value, kept = letter.value.encode(), ()
    previous = original.header(REPLAY_GENERATION) if original is not None and exact else None
    generation = _generation(previous) + 1
    headers = (
        *((k, v) for k, v in kept if k not in REPLAY_HEADERS),
        (REPLAY_OF, entry.record.ref.encode()),
        (REPLAYED_AT, now.astimezone(UTC).isoformat(timespec="seconds").encode()),
        (REPLAY_GENERATION, str(generation).encode()),
    )
    return Replay(entry, letter.topic, key, value, headers, generation, exact)


def matches(letter: DeadLetter, original: KafkaRecord) -> bool:
    """Whether ``original`` is the record ``letter`` was made of (same place, key and value)."""
    return (
        original.topic == letter.topic
        and (original.partition, original.offset) == (letter.partition, letter.offset)
        and as_text(original.key) == letter.key
        and (as_text(original.value) or "") == letter.value
    )


def _generation(raw: bytes | None) -> int:
    try:
        return int(raw or b"0")
    except ValueError:
        return 0


def replayed_refs(records: Iterable[KafkaRecord]) -> dict[str, KafkaRecord]:
    """Dead-letter ref (``topic:partition:offset``) → the first record on the original topic replaying it."""
    found: dict[str, KafkaRecord] = {}
    for record in records:
        ref = record.header(REPLAY_OF)
        if ref is not None:
            found.setdefault(ref.decode(errors="replace"), record)
    return found


# ---- text ----------------------------------------------------------------------------------------------
def one_line(text: str | None, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (an ellipsis marks the cut)."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else "?"


def format_topic(topic: str, counts: Mapping[int, int], entries: Sequence[Entry]) -> str:
    """``list``'s block for one dead-letter topic: the count per partition and the newest ``entries``.

    ORIGINAL is where the refused record is on the topic it came from (see ``inspect`` for the whole record).
    """
    total = sum(counts.values())
    per_partition = " ".join(f"p{p}={n}" for p, n in sorted(counts.items()) if n)
    head = f"{topic}: {total} record{'s' if total != 1 else ''}" + (
        f" ({per_partition})" if per_partition else ""
    )
    if not entries:
        return head
    lines = [
        head,
        f"  {'P:OFFSET':<10} {'DEAD-LETTERED (UTC)':<19}  {'CONSUMER':<24} {'ORIGINAL':<10} {'KEY':<24} "
        "REASON",
    ]
    for entry in entries:
        letter = entry.letter
        if letter is None:
            lines.append(f"  {entry.record.position!s:<10} {_when(entry.time):<19}  {entry.problem}")
            continue
        lines.append(
            f"  {entry.record.position!s:<10} {_when(entry.time):<19}  {one_line(letter.consumer, 24):<24} "
            f"{entry.original_position or '?'!s:<10} {one_line(letter.key or '-', 24):<24} "
            f"{one_line(letter.error, 100)}"
        )
    if total > len(entries):
        lines.append(f"  … the {len(entries)} newest of {total} shown")
    return "\n".join(lines)


def pretty(value: str) -> str:
    """JSON pretty-printed (keys in their order); anything else as it is."""
    try:
        return json.dumps(json.loads(value), indent=2, ensure_ascii=False)
    except ValueError:
        return value


def _headers(headers: Headers) -> list[str]:
    return [f"  {name}: {value.decode(errors='backslashreplace')}" for name, value in headers] or ["  (none)"]


def format_inspect(entry: Entry, original: KafkaRecord | None) -> str:
    """``inspect``: the whole dead letter, and the original record's headers if it is still on its topic."""
    record = entry.record
    lines = [f"dead letter   {record.topic} {record.position}  (written {_when(record.time)} UTC)"]
    letter = entry.letter
    if letter is None:
        lines += [f"problem       {entry.problem}", "value", (record.value or b"").decode(errors="replace")]
        return "\n".join(lines)
    lines += [
        f"consumer      {letter.consumer}",
        f"failed at     {_when(letter.failed_at)} UTC",
        f"from          {letter.topic} {entry.original_position or '(position unknown)'}",
        f"key           {letter.key if letter.key is not None else '(none)'}",
        "reason",
        *(f"  {line}" for line in letter.error.splitlines() or [""]),
    ]
    if original is None:
        lines.append(
            "original headers: the record is no longer on its topic (retention) or has no known position"
        )
    elif not matches(letter, original):
        lines.append(
            "original headers: the record at that position is not this one (was the topic recreated?)"
        )
    else:
        lines += ["original headers", *_headers(original.headers)]
        of = original.header(REPLAY_OF)
        if of is not None:
            generation = _generation(original.header(REPLAY_GENERATION))
            lines.append(
                f"  → it was itself a replay (generation {generation}) of {of.decode(errors='replace')}"
            )
    lines += ["value", pretty(letter.value)]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one selected dead letter in ``replay``."""

    replay: Replay | None
    entry: Entry
    published: Position | None = None
    """Where the replay landed (None: dry run, skipped or not replayable)."""
    earlier: KafkaRecord | None = None
    """An earlier replay of the same dead letter, when it was skipped for that."""
    problem: str | None = None


def format_replay(outcomes: Sequence[Outcome], *, dry_run: bool) -> str:
    """``replay``'s report: one line per selected dead letter and a total."""
    lines: list[str] = []
    done = skipped = failed = 0
    for o in outcomes:
        source = o.entry.record.ref
        if o.problem is not None:
            failed += 1
            lines.append(f"not replayable  {source}: {o.problem}")
        elif o.earlier is not None:
            skipped += 1
            lines.append(
                f"already replayed {source} → {o.earlier.topic} {o.earlier.position} at "
                f"{_when(o.earlier.time)} UTC (--again replays it anyway)"
            )
        elif o.replay is not None:
            done += 1
            r = o.replay
            where = "" if o.published is None else f" {o.published}"
            what = "would replay" if dry_run else "replayed"
            copy = "original record" if r.exact else "rebuilt from the dead letter"
            key = r.key.decode(errors="backslashreplace") if r.key is not None else "(none)"
            lines.append(
                f"{what:<16} {source} → {r.topic}{where} key={key} generation={r.generation} ({copy})"
            )
    verb = "would be replayed" if dry_run else "replayed"
    lines.append(f"{done} {verb}, {skipped} skipped as already replayed, {failed} not replayable")
    return "\n".join(lines)
