"""LINE Messaging API through line-bot-sdk's async client, one shared connection pool for every channel.

The channel's access token travels per call (``_request_auth``), so one :class:`AsyncApiClient` (one aiohttp
session) serves all channels. Every HTTP or network failure is translated into a
:class:`~tagline_sender.domain.delivery.Answer`: the SDK raises ``ApiException`` for non-2xx answers and
aiohttp / asyncio errors for timeouts and dropped connections, and has no retry of its own.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from linebot.v3.messaging import (
    ApiException,
    AsyncApiClient,
    AsyncMessagingApi,
    Configuration,
    MulticastRequest,
    PushMessageRequest,
    ReplyMessageRequest,
)

from tagline_contracts.sending import SendMethod
from tagline_platform.errors import InfrastructureUnavailable
from tagline_sender.domain.delivery import Answer, AnswerKind, classify


def _auth(access_token: str) -> dict[str, str]:
    return {"type": "bearer", "in": "header", "key": "Authorization", "value": f"Bearer {access_token}"}


def _body(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        return {"message": str(raw)[:500]}
    return parsed if isinstance(parsed, dict) else {"message": str(parsed)[:500]}


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    value = headers.get(name) or headers.get(name.lower())
    return str(value) if value else None


class SdkLineGateway:
    def __init__(self, base_url: str, *, timeout_s: float, pool_size: int) -> None:
        # The access token travels with each call; the client's default one is never used.
        self._configuration = Configuration(host=base_url.rstrip("/"), access_token="")
        self._configuration.connection_pool_maxsize = pool_size
        self._client: AsyncApiClient | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    @property
    def _api(self) -> AsyncMessagingApi:
        # Created on first use, inside the running event loop (aiohttp sessions belong to one loop).
        if self._client is None:
            self._client = AsyncApiClient(self._configuration)
        return AsyncMessagingApi(self._client)

    async def send(
        self, method: SendMethod, access_token: str, body: dict[str, Any], retry_key: str | None
    ) -> Answer:
        options: dict[str, Any] = {"_request_auth": _auth(access_token), "_request_timeout": self._timeout}
        try:
            if method is SendMethod.REPLY:
                response = await self._api.reply_message_with_http_info(
                    ReplyMessageRequest.from_dict(body), **options
                )
            elif method is SendMethod.PUSH:
                response = await self._api.push_message_with_http_info(
                    PushMessageRequest.from_dict(body), x_line_retry_key=retry_key, **options
                )
            else:
                response = await self._api.multicast_with_http_info(
                    MulticastRequest.from_dict(body), x_line_retry_key=retry_key, **options
                )
        except ApiException as exc:
            answer = classify(exc.status or 0, _body(exc.body), _header(exc.headers, "X-Line-Request-Id"))
            if answer.kind is AnswerKind.DUPLICATE:
                accepted = _header(exc.headers, "X-Line-Accepted-Request-Id")
                return Answer(answer.kind, answer.status, answer.body, accepted or answer.request_id)
            return answer
        except TimeoutError:
            return Answer(AnswerKind.UNAVAILABLE, detail="timed out")
        except aiohttp.ClientError as exc:
            return Answer(AnswerKind.UNAVAILABLE, detail=f"connection error: {type(exc).__name__}")
        return classify(response.status_code, None, _header(response.headers, "X-Line-Request-Id"))

    async def quota_limit(self, access_token: str) -> int | None:
        quota = await self._call(self._api.get_message_quota, access_token)
        return int(quota.value) if quota.type == "limited" and quota.value is not None else None

    async def quota_usage(self, access_token: str) -> int:
        consumption = await self._call(self._api.get_message_quota_consumption, access_token)
        return int(consumption.total_usage)

    async def _call(self, operation: Any, access_token: str) -> Any:
        try:
            return await operation(_request_auth=_auth(access_token), _request_timeout=self._timeout)
        except ApiException as exc:
            raise InfrastructureUnavailable(f"LINE answered {exc.status}: {exc.body}") from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise InfrastructureUnavailable(f"LINE unreachable: {type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
