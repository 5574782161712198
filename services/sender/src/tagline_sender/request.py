"""``python -m tagline_sender.request``: publish one send request on ``send.requests.v1``.

Reads a :class:`~tagline_contracts.sending.SendMessages` as JSON from a file (or ``-``, stdin), checks it the
way the sender will (the contract model, then the sender's message validation), wraps it in its envelope
(:class:`~tagline_contracts.sending.SendRequested`, schema ``SendMessages``) keyed with
:func:`~tagline_contracts.sending.send_request_key`, publishes it, and prints where it landed and how to
follow it (``make send-request FILE=…`` runs it with the local servers' addresses)::

    python -m tagline_sender.request --channel 1234567890 request.json
    echo '{…}' | python -m tagline_sender.request --channel 1234567890 -

Kafka and the topic namespace come from ``KAFKA_BOOTSTRAP_SERVERS`` and ``TAGLINE_TOPIC_NAMESPACE`` (as for
the services), or ``--bootstrap-servers`` / ``--namespace``. ``--dry-run`` prints the record instead of
publishing it. Publishing the same request twice is harmless: the sender sends an idempotency key once per
channel. Exit status: 0 published (or valid, with ``--dry-run``), 1 invalid request or Kafka unavailable,
2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from tagline_contracts import topics
from tagline_contracts.envelope import new_event_id
from tagline_contracts.sending import SendMessages, SendRequested, send_request_key
from tagline_platform.deadletters import reason
from tagline_platform.kafka import Outgoing, create_producer
from tagline_platform.settings import ServiceSettings, add_kafka_arguments, settings_from_arguments

CLIENT_ID = "tagline-send-request"
DEFAULT_SENDER_URL = "http://127.0.0.1:8081"
TIMEOUT_S = 15.0


class NotPublished(Exception):
    """Why nothing was published: a request the sender would refuse (naming the field), or Kafka."""


@dataclass(frozen=True, slots=True)
class Published:
    topic: str
    partition: int
    offset: int


def parse_request(text: str) -> SendMessages:
    """The request in ``text``, checked as the sender checks it when planning, else :class:`NotPublished`."""
    try:
        loaded: Any = json.loads(text)
    except ValueError as exc:
        raise NotPublished(f"not JSON: {exc}") from None
    try:
        # the contract validates the messages as the sender does (tagline_contracts.line_messages)
        return SendMessages.model_validate(loaded)
    except ValidationError as exc:
        raise NotPublished(reason(exc)) from None


def record_of(settings: ServiceSettings, channel_id: str, request: SendMessages, now: datetime) -> Outgoing:
    """The Kafka record: a :class:`SendRequested` on ``send.requests.v1`` in the namespace, keyed
    ``channel:<target>`` (:func:`send_request_key`, so a user's requests stay in order)."""
    try:
        envelope = SendRequested(
            event_id=new_event_id(), channel_id=channel_id, occurred_at=now, produced_at=now, payload=request
        )
    except ValidationError as exc:
        raise NotPublished(reason(exc)) from None
    key = send_request_key(channel_id, request.target)
    return Outgoing.of(settings.topic(topics.SEND_REQUESTS), key, envelope)


async def publish(settings: ServiceSettings, record: Outgoing, timeout_s: float = TIMEOUT_S) -> Published:
    """Publish ``record`` (acks=all, idempotent producer); the topic must exist (the sender creates it)."""
    servers = settings.kafka_bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=servers, client_id=CLIENT_ID)
    producer = create_producer(settings, client_id=CLIENT_ID)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            if record.topic not in await admin.list_topics():
                raise NotPublished(
                    f"topic {record.topic} does not exist on Kafka at {servers}: start the sender first "
                    "(make run), and check TAGLINE_TOPIC_NAMESPACE"
                )
            await producer.start()
            sent = await producer.send_and_wait(record.topic, record.value, key=record.key)
    except TimeoutError:
        raise NotPublished(f"Kafka at {servers} did not answer within {timeout_s:.0f}s") from None
    except KafkaError as exc:
        raise NotPublished(f"Kafka at {servers}: {exc}") from None
    finally:
        await producer.stop()
        await admin.close()
    return Published(record.topic, sent.partition, sent.offset)


def read_input(name: str, stdin: TextIO) -> str:
    """The text of file ``name``, or of ``stdin`` for ``-``."""
    if name == "-":
        return stdin.read()
    try:
        return Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise NotPublished(f"cannot read {name}: {exc.strerror}") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m tagline_sender.request",
        description="Publish one send request (a SendMessages JSON) on send.requests.v1.",
    )
    top.add_argument("file", help="the SendMessages JSON; - reads stdin")
    top.add_argument("--channel", required=True, help="the channel id to send from")
    add_kafka_arguments(top)
    top.add_argument(
        "--sender-url",
        default=DEFAULT_SENDER_URL,
        help=f"the sender's HTTP API (default {DEFAULT_SENDER_URL})",
    )
    top.add_argument("--dry-run", action="store_true", help="check and print the record, publish nothing")
    return top


async def run(
    argv: Sequence[str],
    *,
    settings: ServiceSettings | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Run the command; returns the exit status. ``settings`` defaults to the environment's."""
    args = parser().parse_args(argv)
    settings = settings_from_arguments(args, settings)
    stream = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream)

    try:
        request = parse_request(read_input(args.file, stdin or sys.stdin))
        record = record_of(settings, args.channel, request, clock())
        if args.dry_run:
            say(f"valid; would publish to {record.topic} with key {record.key.decode()}:")
            say(record.value.decode())
            return 0
        landed = await publish(settings, record)
    except NotPublished as exc:
        say(f"not published: {exc}")
        return 1
    key = request.idempotency_key
    say(
        f"published SendMessages {key!r} for channel {args.channel} to {landed.topic} "
        f"partition {landed.partition} offset {landed.offset} (key {record.key.decode()})"
    )
    path = f"/sends/{quote(args.channel, safe='')}/{quote(key, safe='')}"
    say(f"follow it:  curl -s {args.sender_url.rstrip('/')}{path}")
    say(
        "(a 404 that lasts more than a few seconds means the sender refused it: "
        'make dlq ARGS="list send.requests.v1")'
    )
    return 0


def main() -> int:
    return asyncio.run(run(sys.argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
