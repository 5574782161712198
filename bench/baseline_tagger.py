"""The tagger benchmark's baseline: LINE events to member documents "the usual way", one event at a time.

A FastStream app with one subscriber on ``line.events.v1`` that handles **one message per call** and, for
each event: validates the envelope, translates it (``translate.member_activity``), reads the member with one
``find_one`` by ``_id``, applies the event with the tagger's own domain code (``Member.apply_activity`` with
the compiled ``RuleSet``), writes the member back with one ``replace_one`` (upsert), publishes one
``MemberChanged`` to ``member.changes.v1`` and waits for Kafka's acknowledgement; FastStream then commits the
offset (``AckPolicy.ACK``: a commit after every message). Only the I/O pattern differs from the tagger's
pipeline; the member model, the rules, the document shape and the messages are the same.

The rules are read once at start from the ``rules`` collection of ``--database`` (as the tagger stores them).
The producer is FastStream's own (``acks="all"``, idempotent, otherwise aiokafka's defaults); FastStream's
per-message log lines are off, so logging costs neither side anything. The benchmark measures the baseline's
rate from the offsets its consumer group commits, so the app reports nothing itself.

Run as its own process (the benchmark does this)::

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 MONGODB_URL=mongodb://127.0.0.1:27017/ \
        python bench/baseline_tagger.py --topic line.events.v1 --changes-topic member.changes.v1 \
        --group-id baseline-tagger --database baseline_tagger
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime

import uvloop
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from tagline_contracts.envelope import LineEventReceived
from tagline_contracts.members import MemberChangedEvent
from tagline_platform.mongo import create_mongo_client
from tagline_tagger.adapters.mongo import TaggerStore, member_from_doc, member_to_doc
from tagline_tagger.domain.member import Effects, Member, member_key
from tagline_tagger.domain.rules import Rule, RuleSet
from tagline_tagger.jobs import rule_from_doc
from tagline_tagger.translate import member_activity


def create_app(
    bootstrap_servers: str, mongodb_url: str, *, topic: str, changes_topic: str, group_id: str, database: str
) -> FastStream:
    broker = KafkaBroker(bootstrap_servers, acks="all", enable_idempotence=True, logger=None)
    mongo = create_mongo_client(mongodb_url, app_name="tagline-baseline-tagger")
    store = TaggerStore(mongo[database])
    members = store.members
    rules = RuleSet.empty()

    async def load_rules() -> None:
        nonlocal rules
        rules = RuleSet.compile(Rule.model_validate(rule_from_doc(doc)) for doc in await store.all_rules())

    @broker.subscriber(topic, group_id=group_id, auto_offset_reset="earliest", ack_policy=AckPolicy.ACK)
    async def on_line_event(message: KafkaMessage) -> None:
        envelope = LineEventReceived.model_validate_json(message.body)
        found = member_activity(envelope)
        if found is None:
            return
        user_id, activity = found
        key = member_key(envelope.channel_id, user_id)
        now = datetime.now(UTC)
        doc = await members.find_one({"_id": key})
        member = (
            member_from_doc(doc)
            if doc is not None
            else Member(channel_id=envelope.channel_id, user_id=user_id, created_at=now)
        )
        if member.has_seen(activity.event_id):
            return
        effects = Effects()
        member.apply_activity(activity, rules, effects)
        member.mark_seen(activity.event_id)
        member.expire_tags(now, effects)
        change = member.changed(effects, now) if effects.changes else None  # bumps the version
        await members.replace_one({"_id": key}, member_to_doc(member, now), upsert=True)
        if change is not None:
            event = MemberChangedEvent(
                event_id=f"{key}:{change.version}",
                channel_id=member.channel_id,
                occurred_at=now,
                produced_at=now,
                payload=change,
            )
            await broker.publish(
                event.model_dump_json(by_alias=True).encode(), topic=changes_topic, key=key.encode()
            )

    async def close_mongo() -> None:
        await mongo.close()

    return FastStream(broker, logger=None, on_startup=[load_rules], after_shutdown=[close_mongo])


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    args.add_argument("--topic", required=True, help="the (namespaced) line.events.v1 topic to consume")
    args.add_argument("--changes-topic", required=True, help="where to publish MemberChanged")
    args.add_argument("--group-id", required=True)
    args.add_argument("--database", required=True, help="holds the rules; members are written there")
    options = args.parse_args()
    app = create_app(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"),
        topic=options.topic,
        changes_topic=options.changes_topic,
        group_id=options.group_id,
        database=options.database,
    )
    uvloop.run(app.run())  # FastStream stops on SIGTERM / SIGINT


if __name__ == "__main__":
    main()
