"""``python -m tagline_platform.dlq``: list, inspect and replay dead letters.

Kafka and the topic namespace come from ``KAFKA_BOOTSTRAP_SERVERS`` and ``TAGLINE_TOPIC_NAMESPACE`` (as for
the services), or ``--bootstrap-servers`` / ``--namespace``. A topic may be named by its dead-letter name
(``send.requests.dlq.v1``) or by the topic it belongs to (``send.requests.v1``)::

    python -m tagline_platform.dlq list [TOPIC] [--limit 10] [--consumer GROUP]
    python -m tagline_platform.dlq inspect TOPIC PARTITION:OFFSET
    python -m tagline_platform.dlq replay TOPIC (--offset P:O ... | --since 2h | --all) [--consumer GROUP]
                                          [--dry-run] [--again]

``replay`` publishes the refused record again to the topic it was refused from: the original record's key,
value and headers when it is still on that topic, otherwise the key and value kept in the dead letter, plus
headers naming the dead letter it replays (see :mod:`tagline_platform.dlq.records`). A dead letter that was
replayed already is skipped unless ``--again`` is given; consumers drop duplicates by event id anyway.
Exit status: 0 done, 1 something asked for was not found or not replayable, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from tagline_platform.dlq.client import DlqClient
from tagline_platform.dlq.records import (
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
    parse_since,
    plan_replay,
    replayed_refs,
    select,
)
from tagline_platform.errors import TaglineError
from tagline_platform.settings import ServiceSettings, add_kafka_arguments, settings_from_arguments

Say = Callable[[str], None]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m tagline_platform.dlq", description="List, inspect and replay Tagline's dead letters."
    )
    add_kafka_arguments(top)
    commands = top.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="count per dead-letter topic and the newest entries")
    listing.add_argument("topic", nargs="?", help="one topic (default: every dead-letter topic that exists)")
    listing.add_argument("--limit", type=int, default=10, help="newest entries shown per topic (default 10)")
    listing.add_argument("--consumer", help="only entries refused by this consumer group")

    inspect = commands.add_parser("inspect", help="one dead letter in full")
    inspect.add_argument("topic")
    inspect.add_argument("position", type=Position.parse, help="PARTITION:OFFSET on the dead-letter topic")

    replay = commands.add_parser("replay", help="publish dead letters again to their original topic")
    replay.add_argument("topic")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--offset",
        dest="positions",
        type=Position.parse,
        action="append",
        help="PARTITION:OFFSET (repeatable)",
    )
    which.add_argument("--since", help="dead-lettered since: a duration (90m, 2h, 3d) or an ISO 8601 time")
    which.add_argument("--all", action="store_true", help="every entry of the topic")
    replay.add_argument("--consumer", help="only entries refused by this consumer group")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed, publish nothing")
    replay.add_argument("--again", action="store_true", help="replay entries that were replayed before too")
    return top


async def run(
    argv: Sequence[str],
    *,
    settings: ServiceSettings | None = None,
    out: TextIO | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run one command; returns the exit status. ``settings`` defaults to the environment's."""
    args = parser().parse_args(argv)
    settings = settings_from_arguments(args, settings)
    stream = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream)

    async with DlqClient(settings) as client:
        if args.command == "list":
            return await _list(client, settings, args, say)
        if args.command == "inspect":
            return await _inspect(client, settings, args, say)
        return await _replay(client, settings, args, say, clock())


async def _list(client: DlqClient, settings: ServiceSettings, args: argparse.Namespace, say: Say) -> int:
    ns = settings.topic_namespace
    wanted = [dlq_topic(args.topic, ns)] if args.topic else all_dlq_topics(ns)
    present = await client.existing(wanted)
    if not present:
        say(
            f"no dead-letter topic {wanted[0]}" if args.topic else f"no dead-letter topics (namespace {ns!r})"
        )
        return 1 if args.topic else 0
    for topic in present:
        counts, records = await client.tail(topic, args.limit)
        entries = newest(select((Entry.of(r) for r in records), consumer=args.consumer), args.limit)
        say(format_topic(topic, counts, entries))
    return 0


async def _inspect(client: DlqClient, settings: ServiceSettings, args: argparse.Namespace, say: Say) -> int:
    topic = dlq_topic(args.topic, settings.topic_namespace)
    record = await client.at(topic, args.position)
    if record is None:
        say(f"no record at {topic} {args.position}")
        return 1
    entry = Entry.of(record)
    say(format_inspect(entry, await _original(client, entry)))
    return 0


async def _original(client: DlqClient, entry: Entry) -> KafkaRecord | None:
    """The refused record itself, if it is still on its topic."""
    position = entry.original_position
    if entry.letter is None or position is None:
        return None
    return await client.at(entry.letter.topic, position)


async def _replay(
    client: DlqClient, settings: ServiceSettings, args: argparse.Namespace, say: Say, now: datetime
) -> int:
    topic = dlq_topic(args.topic, settings.topic_namespace)
    if not await client.existing([topic]):
        say(f"no dead-letter topic {topic}")
        return 1
    status = 0
    if args.positions:
        records = []
        for position in args.positions:
            found = await client.at(topic, position)
            if found is None:
                say(f"no record at {topic} {position}")
                status = 1
            else:
                records.append(found)
        since = None
    elif args.since:
        since = parse_since(args.since, now)
        records = await client.since(topic, since)
    else:
        since = None
        records = await client.everything(topic)
    entries = select((Entry.of(r) for r in records), since=since, consumer=args.consumer)
    if not entries:
        say(f"nothing to replay on {topic}")
        return status
    earlier = {} if args.again else await _earlier_replays(client, entries)
    outcomes: list[Outcome] = []
    for entry in entries:
        if entry.record.ref in earlier:
            outcomes.append(Outcome(None, entry, earlier=earlier[entry.record.ref]))
            continue
        try:
            replay = plan_replay(entry, await _original(client, entry), now)
        except NotReplayable as exc:
            outcomes.append(Outcome(None, entry, problem=str(exc)))
            status = 1
            continue
        published = None if args.dry_run else await client.publish(replay)
        outcomes.append(Outcome(replay, entry, published))
    say(format_replay(outcomes, dry_run=args.dry_run))
    return status


async def _earlier_replays(client: DlqClient, entries: Sequence[Entry]) -> dict[str, KafkaRecord]:
    """Replays already on the original topics of ``entries``, by the dead letter they replay.

    Only the records written since the earliest of these failures are read (a replay comes after its failure).
    """
    found: dict[str, KafkaRecord] = {}
    by_topic: dict[str, datetime] = {}
    for entry in entries:
        if entry.letter is not None:
            failed = entry.letter.failed_at
            by_topic[entry.letter.topic] = min(failed, by_topic.get(entry.letter.topic, failed))
    for original_topic, earliest in sorted(by_topic.items()):
        found.update(replayed_refs(await client.since(original_topic, earliest)))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return asyncio.run(run(sys.argv[1:] if argv is None else argv))
    except (TaglineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
