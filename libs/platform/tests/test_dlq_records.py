"""The dead-letter tool's pure part: names, selection, replay records and the text it prints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tagline_contracts.deadletter import DeadLetter
from tagline_platform.dlq.records import (
    REPLAY_GENERATION,
    REPLAY_OF,
    REPLAYED_AT,
    Entry,
    KafkaRecord,
    NotReplayable,
    Outcome,
    Position,
    all_dlq_topics,
    dlq_topic,
    format_inspect,
    format_replay,
    format_topic,
    newest,
    one_line,
    parse_since,
    plan_replay,
    replayed_refs,
    select,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
VALUE = '{"event_id":"01J","channel_id":"123","payload":{"x":1}}'


def letter(
    *, offset: int = 7, key: str | None = "123:U1", value: str = VALUE, consumer: str = "g1"
) -> DeadLetter:
    return DeadLetter(
        topic="ns.send.requests.v1",
        partition=2,
        offset=offset,
        key=key,
        value=value,
        error="payload.messages: Field required\nsecond line",
        consumer=consumer,
        failed_at=T0,
    )


def dlq_record(dead: DeadLetter, *, partition: int = 0, offset: int = 0, at: datetime = T0) -> KafkaRecord:
    return KafkaRecord(
        "ns.send.requests.dlq.v1",
        partition,
        offset,
        int(at.timestamp() * 1000),
        dead.key.encode() if dead.key else None,
        dead.model_dump_json(by_alias=True).encode(),
        (("content-type", b"application/json"),),
    )


def original_record(dead: DeadLetter, headers: tuple[tuple[str, bytes], ...] = ()) -> KafkaRecord:
    return KafkaRecord(
        dead.topic,
        dead.partition or 0,
        dead.offset or 0,
        int(T0.timestamp() * 1000) - 5,
        dead.key.encode() if dead.key else None,
        dead.value.encode(),
        headers,
    )


def test_topic_names_accept_the_dead_letter_topic_or_its_original_with_or_without_namespace() -> None:
    assert dlq_topic("send.requests.v1") == "send.requests.dlq.v1"
    assert dlq_topic("send.requests.dlq.v1") == "send.requests.dlq.v1"
    assert dlq_topic("send.requests.v1", "t1.") == "t1.send.requests.dlq.v1"
    assert dlq_topic("t1.send.requests.dlq.v1", "t1.") == "t1.send.requests.dlq.v1"
    assert "t1.shop.order-status.dlq.v1" in all_dlq_topics("t1.")
    assert len(all_dlq_topics()) == 8


def test_positions_and_since_are_parsed_or_refused() -> None:
    assert Position.parse("3:17") == Position(3, 17)
    assert str(Position(3, 17)) == "3:17"
    for bad in ("3", "a:1", "1:-2", ""):
        with pytest.raises(ValueError, match="partition"):
            Position.parse(bad)
    assert parse_since("90m", T0) == T0 - timedelta(minutes=90)
    assert parse_since("2d", T0) == T0 - timedelta(days=2)
    assert parse_since("2025-02-01T08:00:00", T0) == datetime(2025, 2, 1, 8, tzinfo=UTC)
    assert parse_since("2025-02-01T08:00:00+08:00", T0) == datetime(2025, 2, 1, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", T0)


def test_an_entry_reads_its_dead_letter_or_says_what_is_wrong() -> None:
    good = Entry.of(dlq_record(letter()))
    assert good.letter is not None and good.letter.consumer == "g1"
    assert good.original_position == Position(2, 7)
    assert good.time == T0
    bad = Entry.of(KafkaRecord("x.dlq.v1", 0, 1, None, None, b"not json"))
    assert bad.letter is None and bad.problem is not None and "not a DeadLetter" in bad.problem
    assert bad.time is None


def test_selection_by_position_time_and_consumer_oldest_first() -> None:
    entries = [
        Entry.of(dlq_record(letter(offset=1), partition=1, offset=4, at=T0 + timedelta(minutes=2))),
        Entry.of(dlq_record(letter(offset=2, consumer="g2"), partition=0, offset=9, at=T0)),
        Entry.of(dlq_record(letter(offset=3), partition=0, offset=10, at=T0 + timedelta(minutes=5))),
    ]
    assert [e.record.offset for e in select(entries)] == [9, 4, 10]
    assert [e.record.offset for e in select(entries, positions=[Position(0, 10), Position(1, 4)])] == [4, 10]
    assert [e.record.offset for e in select(entries, since=T0 + timedelta(minutes=1))] == [4, 10]
    assert [e.record.offset for e in select(entries, consumer="g2")] == [9]
    assert [e.record.offset for e in newest(entries, 2)] == [10, 4]


def test_a_replay_is_the_original_record_with_its_headers_and_the_replay_headers() -> None:
    dead = letter()
    entry = Entry.of(dlq_record(dead, partition=1, offset=5))
    original = original_record(
        dead, (("traceparent", b"00-abc"), (REPLAY_OF, b"older:0:1"), (REPLAY_GENERATION, b"2"))
    )
    replay = plan_replay(entry, original, T0 + timedelta(hours=1))
    assert replay.exact
    assert (replay.topic, replay.key, replay.value) == ("ns.send.requests.v1", b"123:U1", VALUE.encode())
    assert replay.generation == 3
    assert replay.headers == (
        ("traceparent", b"00-abc"),
        (REPLAY_OF, b"ns.send.requests.dlq.v1:1:5"),
        (REPLAYED_AT, b"2025-03-01T13:00:00+00:00"),
        (REPLAY_GENERATION, b"3"),
    )


def test_without_the_original_record_a_replay_is_rebuilt_from_the_dead_letter() -> None:
    dead = letter(key=None)
    entry = Entry.of(dlq_record(dead))
    gone = plan_replay(entry, None, T0)
    assert not gone.exact and gone.key is None and gone.value == VALUE.encode() and gone.generation == 1
    assert [name for name, _ in gone.headers] == [REPLAY_OF, REPLAYED_AT, REPLAY_GENERATION]
    # another record at that position (the topic was recreated): its headers are not taken
    other = KafkaRecord(dead.topic, 2, 7, None, None, b"{}", (("traceparent", b"x"),))
    assert not plan_replay(entry, other, T0).exact
    with pytest.raises(NotReplayable, match="not a DeadLetter"):
        plan_replay(Entry.of(KafkaRecord("x.dlq.v1", 0, 1, None, None, b"?")), None, T0)


def test_earlier_replays_are_found_by_their_header() -> None:
    first = KafkaRecord("t.v1", 0, 3, None, None, b"", ((REPLAY_OF, b"t.dlq.v1:0:1"),))
    second = KafkaRecord("t.v1", 1, 8, None, None, b"", ((REPLAY_OF, b"t.dlq.v1:0:1"),))
    plain = KafkaRecord("t.v1", 0, 4, None, None, b"")
    assert replayed_refs([first, plain, second]) == {"t.dlq.v1:0:1": first}


def test_list_shows_counts_and_one_line_per_entry() -> None:
    entries = [Entry.of(dlq_record(letter(), partition=0, offset=9))]
    text = format_topic("ns.send.requests.dlq.v1", {0: 3, 1: 0, 2: 1}, entries)
    head, columns, row, more = text.splitlines()
    assert head == "ns.send.requests.dlq.v1: 4 records (p0=3 p2=1)"
    assert "REASON" in columns
    assert row.split()[:4] == ["0:9", "2025-03-01", "12:00:00", "g1"]
    assert row.split()[4:6] == ["2:7", "123:U1"]
    assert row.endswith("payload.messages: Field required second line")
    assert more == "  … the 1 newest of 4 shown"
    assert format_topic("x.dlq.v1", {0: 0}, []) == "x.dlq.v1: 0 records"
    assert one_line("a\n  b", 10) == "a b"
    assert one_line("abcdefghijkl", 5) == "abcd…"


def test_inspect_shows_the_reason_the_original_headers_and_the_value_pretty_printed() -> None:
    dead = letter()
    entry = Entry.of(dlq_record(dead, offset=4))
    original = original_record(dead, ((REPLAY_OF, b"ns.send.requests.dlq.v1:0:1"), (REPLAY_GENERATION, b"1")))
    text = format_inspect(entry, original)
    assert "dead letter   ns.send.requests.dlq.v1 0:4" in text
    assert "consumer      g1" in text
    assert "from          ns.send.requests.v1 2:7" in text
    assert "key           123:U1" in text
    assert "  payload.messages: Field required\n  second line" in text
    assert f"  {REPLAY_OF}: ns.send.requests.dlq.v1:0:1" in text
    assert "it was itself a replay (generation 1) of ns.send.requests.dlq.v1:0:1" in text
    assert '"payload": {\n    "x": 1\n  }' in text
    assert "no longer on its topic" in format_inspect(entry, None)


def test_the_replay_report_names_each_dead_letter_and_what_became_of_it() -> None:
    dead = letter()
    entry = Entry.of(dlq_record(dead, offset=4))
    replay = plan_replay(entry, original_record(dead), T0)
    earlier = KafkaRecord("ns.send.requests.v1", 2, 30, int(T0.timestamp() * 1000), None, b"")
    broken = Entry.of(KafkaRecord("ns.send.requests.dlq.v1", 0, 5, None, None, b"?"))
    outcomes = [
        Outcome(replay, entry, Position(2, 31)),
        Outcome(None, entry, earlier=earlier),
        Outcome(None, broken, problem="not a DeadLetter"),
    ]
    lines = format_replay(outcomes, dry_run=False).splitlines()
    assert lines[0].startswith("replayed         ns.send.requests.dlq.v1:0:4 → ns.send.requests.v1 2:31")
    assert "key=123:U1 generation=1 (original record)" in lines[0]
    assert lines[1].startswith("already replayed ns.send.requests.dlq.v1:0:4 → ns.send.requests.v1 2:30")
    assert lines[2] == "not replayable  ns.send.requests.dlq.v1:0:5: not a DeadLetter"
    assert lines[3] == "1 replayed, 1 skipped as already replayed, 1 not replayable"
    dry = format_replay([Outcome(replay, entry)], dry_run=True).splitlines()
    assert dry[0].startswith("would replay     ns.send.requests.dlq.v1:0:4 → ns.send.requests.v1 key=")
    assert dry[1] == "1 would be replayed, 0 skipped as already replayed, 0 not replayable"
