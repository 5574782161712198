"""Builds correctly signed LINE webhook requests for tests and benchmarks."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import orjson

from tagline_contracts.envelope import new_event_id
from tagline_contracts.signature import sign


@dataclass(frozen=True)
class SignedRequest:
    body: bytes
    headers: dict[str, str]


class WebhookBuilder:
    """Events shaped as in LINE's webhook.yml, and bodies signed with the channel secret."""

    def __init__(self, channel_secret: str, destination: str = "U" + "d" * 32) -> None:
        self.channel_secret = channel_secret
        self.destination = destination
        self._clock = itertools.count(int(time.time() * 1000))

    def event(
        self,
        event_type: str,
        user_id: str | None = None,
        *,
        redelivery: bool = False,
        mode: str = "active",
        **fields: Any,
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": event_type,
            "mode": mode,
            "timestamp": next(self._clock),
            "webhookEventId": new_event_id(),
            "deliveryContext": {"isRedelivery": redelivery},
        }
        if user_id is not None:
            event["source"] = {"type": "user", "userId": user_id}
        event.update(fields)
        return event

    def text(self, user_id: str, text: str, **fields: Any) -> dict[str, Any]:
        message = {
            "id": str(next(self._clock)),
            "type": "text",
            "text": text,
            "quoteToken": "q" + new_event_id(),
        }
        return self.event("message", user_id, replyToken=new_event_id(), message=message, **fields)

    def follow(self, user_id: str, *, unblocked: bool = False) -> dict[str, Any]:
        return self.event("follow", user_id, replyToken=new_event_id(), follow={"isUnblocked": unblocked})

    def unfollow(self, user_id: str) -> dict[str, Any]:
        return self.event("unfollow", user_id)

    def postback(self, user_id: str, data: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        postback: dict[str, Any] = {"data": data}
        if params:
            postback["params"] = params
        return self.event("postback", user_id, replyToken=new_event_id(), postback=postback)

    def body(self, events: list[dict[str, Any]]) -> bytes:
        return orjson.dumps({"destination": self.destination, "events": events})

    def sign_body(self, body: bytes, *, secret: str | None = None) -> SignedRequest:
        signature = sign(secret if secret is not None else self.channel_secret, body)
        return SignedRequest(body, {"content-type": "application/json", "x-line-signature": signature})

    def request(self, events: list[dict[str, Any]], *, secret: str | None = None) -> SignedRequest:
        return self.sign_body(self.body(events), secret=secret)
