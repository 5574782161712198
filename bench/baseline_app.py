"""The benchmark's baseline: LINE webhooks to Kafka "the usual way".

A FastAPI app as in line-bot-sdk's examples: read the raw body, let ``linebot.v3.webhook.WebhookParser`` check
the signature and parse the events, then for each event ``await producer.send_and_wait(...)`` with a plain
aiokafka producer (``acks="all"``, idempotent, otherwise defaults) and answer 200 once every send returned.

Run as its own process (the benchmark does this)::

    BASELINE_CHANNEL_SECRETS='{"<channel id>": "<secret>"}' KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 \
        python bench/baseline_app.py --port 8090 --topic line.events.v1

uvicorn runs it like ingest: uvloop, httptools, one worker, no access log.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, HTTPException, Request, Response
from linebot.v3.exceptions import InvalidSignatureError
from linebot.v3.webhook import WebhookParser


def _source_key(event: Any) -> bytes | None:
    source = getattr(event, "source", None)
    user_id = getattr(source, "user_id", None)
    return user_id.encode() if isinstance(user_id, str) else None


def create_app(bootstrap_servers: str, topic: str, channel_secrets: dict[str, str]) -> FastAPI:
    parsers = {channel: WebhookParser(secret) for channel, secret in channel_secrets.items()}
    producer: Any = None  # aiokafka needs a running loop to create it: made in the lifespan

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        nonlocal producer
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            yield
        finally:
            await producer.stop()

    app = FastAPI(title="baseline webhook → Kafka", lifespan=lifespan)

    @app.post("/line/webhook/{channel_id}")
    async def callback(channel_id: str, request: Request) -> Response:
        parser = parsers.get(channel_id)
        if parser is None:
            raise HTTPException(status_code=404, detail="unknown channel")
        signature = request.headers.get("x-line-signature", "")
        body = (await request.body()).decode("utf-8")
        try:
            events = parser.parse(body, signature)
        except InvalidSignatureError:
            raise HTTPException(status_code=400, detail="invalid signature") from None
        for event in events:
            await producer.send_and_wait(topic, value=event.to_json().encode(), key=_source_key(event))
        return Response(status_code=200)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}  # the lifespan started the producer before the first request

    return app


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    args.add_argument("--host", default="127.0.0.1")
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--topic", required=True)
    options = args.parse_args()
    secrets = json.loads(os.environ["BASELINE_CHANNEL_SECRETS"])
    app = create_app(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), options.topic, secrets)
    uvicorn.run(
        app,
        host=options.host,
        port=options.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
