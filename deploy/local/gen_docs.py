"""Tagline's API documentation under docs/api/, from the code: ``uv run python deploy/local/gen_docs.py``.

* ``asyncapi/<service>.json``: AsyncAPI 3.0 of every topic a service consumes or publishes, with each record's
  key and payload schema. The consumers are read from the service's own FastStream broker (each subscriber's
  topics, consumer group, batch size); the payload of each topic is its envelope model from
  :mod:`tagline_contracts.catalog`. The services publish through a raw aiokafka producer or
  ``broker.publish``, which FastStream cannot see, so what each one publishes is listed in :data:`PUBLISHES`
  and :data:`DEAD_LETTERS` below (the test compares them with the topics each service creates at start-up).
* ``openapi/<service>.json``: each HTTP API's ``FastAPI.openapi()`` (the LINE emulator's control API too).
* ``README.md``: the index, with one row per topic (key, payload, publishers, consumers).

Nothing connects to Kafka or MongoDB: the services are built, never started. Every ``TAGLINE_*`` variable
and the infrastructure addresses are ignored, so the output depends on the code only; JSON keys are sorted so
that a test can tell whether the committed documents are current (``make docs`` rewrites them).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import json
import logging
import operator
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI

from tagline_contracts import topics
from tagline_contracts.catalog import TopicContract, contract, is_dlq, original_of

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "api"
SERVERS = "kafka:9092"
"""The Kafka address shown in the documents (docker-compose.yml's)."""
VERSION = "0.1.0"
BINDING_VERSION = "0.4.0"

SERVICES = ("ingest", "tagger", "sender", "liveshop")

PUBLISHES: dict[str, tuple[tuple[str, str], ...]] = {
    "ingest": ((topics.LINE_EVENTS, "every event of an accepted webhook, acknowledged before the 200"),),
    "tagger": (
        (topics.MEMBER_CHANGES, "every change of a member it applied, with the member's snapshot"),
        (topics.SEND_REQUESTS, "keyword auto-replies (reply token while fresh, push otherwise)"),
        (
            topics.MEMBER_ATTRIBUTES,
            "manual tags from its HTTP API, campaign tags from send results, RFM scores",
        ),
    ),
    "sender": (
        (topics.SEND_RESULTS, "what became of each send request (accepted, deferred, failed)"),
        (topics.SEND_REQUESTS, "welcome messages and journey steps (then consumed by the sender itself)"),
    ),
    "liveshop": (
        (topics.SEND_REQUESTS, "order confirmations, waitlist and status notices to the buyer"),
        (topics.SHOP_ORDERS, "every change of an order, and LINE POINTS granted"),
    ),
}
"""What each service publishes (not visible to FastStream: raw producer or ``broker.publish``)."""

DEAD_LETTERS: dict[str, tuple[str, ...]] = {
    "ingest": (),
    "tagger": (topics.LINE_EVENTS, topics.MEMBER_ATTRIBUTES, topics.SHOP_ORDERS, topics.SEND_RESULTS),
    "sender": (topics.SEND_REQUESTS, topics.MEMBER_CHANGES),
    "liveshop": (topics.LIVE_COMMENTS, topics.LINE_EVENTS, topics.SHOP_ORDER_STATUS),
}
"""The topics whose refused records each service dead-letters to ``<topic>.dlq.v1``."""

_INFRA_VARIABLES = ("KAFKA_BOOTSTRAP_SERVERS", "MONGODB_URL")


@dataclass(frozen=True, slots=True)
class Consumer:
    """One subscriber of a service's broker, on one topic."""

    topic: str
    group_id: str
    handler: str
    batch: int | None


@dataclass(slots=True)
class Service:
    name: str
    title: str
    openapi: dict[str, Any] | None
    consumers: list[Consumer] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Documents:
    files: dict[str, str]
    """Relative path → content."""


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def consumers_of(broker: KafkaBroker) -> list[Consumer]:
    """The (topic, group) pairs of the broker's subscribers, as declared in the service's code."""
    found: list[Consumer] = []
    for subscriber in broker.subscribers:
        sub: Any = subscriber
        batch = sub.max_records if type(sub).__name__.startswith("Batch") else None
        for topic in sub.specification.topics:
            found.append(Consumer(topic, sub.group_id, sub.specification.call_name, batch))
    return sorted(found, key=lambda c: (c.topic, c.group_id))


def _payload_type(topic: TopicContract) -> Any:
    return functools.reduce(operator.or_, topic.messages)


def _typed_handler(name: str, payload: Any) -> Callable[..., Any]:
    """A do-nothing handler whose parameter is ``payload``, so FastStream documents the record's schema."""

    async def handler(message: Any) -> None:
        del message

    handler.__name__ = name
    handler.__annotations__ = {"message": payload, "return": None}
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("message", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=payload)],
        return_annotation=None,
    )
    return handler


def _models(topic: TopicContract) -> str:
    return " | ".join(f"`{m.__name__}`" for m in topic.messages)


def asyncapi(service: Service) -> dict[str, Any]:
    """The service's AsyncAPI 3.0 document, built by FastStream from a documentation-only broker."""
    broker = KafkaBroker(SERVERS, description="The deployment's Kafka (KAFKA_BOOTSTRAP_SERVERS).")
    keys: dict[str, str] = {}  # channel title → key description
    groups: dict[str, str] = {}  # channel title → consumer group
    for consumer in service.consumers:
        topic = contract(consumer.topic)
        title = f"{consumer.topic}:{consumer.group_id}"
        batching = f", in batches of up to {consumer.batch} records" if consumer.batch else ""
        description = (
            f"{topic.summary}\n\nConsumed by group `{consumer.group_id}` (handler `{consumer.handler}`"
            f"{batching}). Key: `{topic.key}`. Payload: {_models(topic)}."
        )
        broker.subscriber(consumer.topic, group_id=consumer.group_id, title=title, description=description)(
            _typed_handler(consumer.handler, _payload_type(topic))
        )
        keys[title] = topic.key
        groups[title] = consumer.group_id
    published = [
        *PUBLISHES[service.name],
        *((topics.dlq(t), "refused records, with the reason") for t in DEAD_LETTERS[service.name]),
    ]
    for name, why in sorted(published):
        topic = contract(name)
        title = f"{name}:publish"
        description = (
            f"{topic.summary}\n\nPublished by {service.name}: {why}. Key: `{topic.key}`. Payload: "
            + (f"{_models(topic)}.")
        )
        broker.publisher(name, title=title, description=description, schema=_payload_type(topic))
        keys[title] = topic.key
    document: dict[str, Any] = (
        AsyncAPI(
            broker,
            title=service.title,
            version=VERSION,
            description=(
                f"The Kafka records {service.name} consumes and publishes. Topic names are logical: a "
                "deployment may prefix them all (TAGLINE_TOPIC_NAMESPACE). Values are JSON, keyed as each "
                "channel says."
            ),
        )
        .to_specification()
        .to_jsonable()
    )
    _add_kafka_bindings(document, keys, groups)
    return document


def _add_kafka_bindings(document: dict[str, Any], keys: dict[str, str], groups: dict[str, str]) -> None:
    """Kafka message keys and consumer groups, which FastStream leaves out of the document."""
    messages = document.get("components", {}).get("messages", {})
    for title, channel in document.get("channels", {}).items():
        for ref in channel.get("messages", {}).values():
            name = ref["$ref"].removeprefix("#/components/messages/")
            messages[name]["bindings"] = {
                "kafka": {
                    "key": {"type": "string", "description": keys[title]},
                    "bindingVersion": BINDING_VERSION,
                }
            }
    for operation in document.get("operations", {}).values():
        title = operation["channel"]["$ref"].removeprefix("#/channels/")
        if title in groups:
            operation["bindings"] = {
                "kafka": {
                    "groupId": {"type": "string", "enum": [groups[title]]},
                    "bindingVersion": BINDING_VERSION,
                }
            }


def index(services: Iterable[Service], openapi_names: Iterable[str]) -> str:
    """docs/api/README.md: the documents and one row per topic."""
    services = list(services)
    publishers: dict[str, list[str]] = {}
    consumers: dict[str, list[str]] = {}
    for service in services:
        for name, _why in PUBLISHES[service.name]:
            publishers.setdefault(name, []).append(service.name)
        for name in DEAD_LETTERS[service.name]:
            publishers.setdefault(topics.dlq(name), []).append(service.name)
        for consumer in service.consumers:
            consumers.setdefault(consumer.topic, []).append(f"{service.name} (`{consumer.group_id}`)")
    lines = [
        "# Tagline API documentation",
        "",
        "Generated from the code by `make docs` (`uv run python deploy/local/gen_docs.py`); do not edit",
        "by hand. A test fails when these files are not current.",
        "",
        "## Kafka (AsyncAPI 3.0)",
        "",
        *(f"- [{s.name}](asyncapi/{s.name}.json)" for s in services),
        "",
        "## HTTP (OpenAPI)",
        "",
        *(f"- [{name}](openapi/{name}.json)" for name in openapi_names),
        "",
        "## Topics",
        "",
        "Logical names: a deployment may prefix every topic (`TAGLINE_TOPIC_NAMESPACE`). Values are JSON",
        "envelopes (`event_id`, `channel_id`, `occurred_at`, `produced_at`, `schema`, `payload`), dead",
        "letters excepted.",
        "",
        "| topic | key | payload | published by | consumed by |",
        "|---|---|---|---|---|",
    ]
    every = sorted(
        {*topics.ALL, *publishers, *consumers}, key=lambda n: (original_of(n) if is_dlq(n) else n, is_dlq(n))
    )
    for name in every:
        topic = contract(name)
        published = sorted(publishers.get(name, []))
        if topic.external_producers:
            published.append(f"external: {topic.external_producers}")
        consumed = sorted(consumers.get(name, [])) or ["operators (`python -m tagline_platform.dlq`)"]
        cells = [
            f"`{name}`",
            f"`{topic.key}`",
            _models(topic),
            ", ".join(published) or "—",
            ", ".join(consumed),
        ]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


async def _build_services() -> tuple[list[Service], dict[str, dict[str, Any]]]:
    # imported here: the services' modules are only needed to generate, not to import this script
    from tagline_ingest.app import create_app as create_ingest  # noqa: PLC0415
    from tagline_ingest.settings import IngestSettings  # noqa: PLC0415
    from tagline_line_emulator.control import create_control_app  # noqa: PLC0415
    from tagline_line_emulator.emulator import Emulator  # noqa: PLC0415
    from tagline_liveshop.app import create_app as create_liveshop  # noqa: PLC0415
    from tagline_liveshop.settings import LiveshopSettings  # noqa: PLC0415
    from tagline_sender.app import create_app as create_sender  # noqa: PLC0415
    from tagline_sender.settings import SenderSettings  # noqa: PLC0415
    from tagline_tagger.app import create_app as create_tagger  # noqa: PLC0415
    from tagline_tagger.settings import TaggerSettings  # noqa: PLC0415

    ingest = create_ingest(IngestSettings())
    tagger = create_tagger(TaggerSettings())
    sender = create_sender(SenderSettings())
    liveshop = create_liveshop(LiveshopSettings())
    services = [Service("ingest", "Tagline ingest", ingest.api.openapi())]
    try:
        for name, app in (("tagger", tagger), ("sender", sender), ("liveshop", liveshop)):
            built = Service(name, f"Tagline {name}", app.openapi(), consumers_of(app.state.service.broker))
            services.append(built)
    finally:
        await sender.state.service.line.close()
        await liveshop.state.service.gateway.close()
        for app in (tagger, sender, liveshop):
            await app.state.service.mongo.close()
    openapi = {s.name: s.openapi for s in services if s.openapi is not None}
    openapi["line-emulator"] = create_control_app(Emulator()).openapi()
    return services, openapi


def generate() -> Documents:
    """Every document, from the code alone (the environment's Tagline settings are ignored)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("TAGLINE_") or k in _INFRA_VARIABLES}
    for name in saved:
        del os.environ[name]
    logging.disable(
        logging.WARNING
    )  # "no channel secrets configured" and the like: true, and beside the point
    try:
        services, openapi = asyncio.run(_build_services())
    finally:
        logging.disable(logging.NOTSET)
        os.environ.update(saved)
    files = {f"asyncapi/{s.name}.json": dump_json(asyncapi(s)) for s in services}
    files.update({f"openapi/{name}.json": dump_json(doc) for name, doc in sorted(openapi.items())})
    files["README.md"] = index(services, sorted(openapi))
    return Documents(files)


def write(documents: Documents, out: Path) -> None:
    """Replace ``out``'s generated folders and index with ``documents``."""
    for folder in ("asyncapi", "openapi"):
        shutil.rmtree(out / folder, ignore_errors=True)
    for relative, content in documents.files.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write (default: docs/api)")
    args = parser.parse_args(argv)
    documents = generate()
    write(documents, args.out)
    print(f"wrote {len(documents.files)} files under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
