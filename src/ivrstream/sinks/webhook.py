"""POST events to a webhook, signed per Standard Webhooks.

Rules this module keeps:

- Batched by default: the body is a JSON array of canonical events (receivers de-duplicate on
  each ``event_id``) and ``webhook-id`` is derived from the batch's event ids, so a retried
  batch carries the same id. ``mode = "single"`` posts one event per request with
  ``webhook-id`` = its event id.
- With a secret (``whsec_…``) every request carries ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.
- 2xx: delivered. 410: the endpoint is gone (the sink is disabled). 408, 425, 429, 5xx, timeouts
  and network errors: retry (honouring ``Retry-After``). Any other 4xx: the content is refused
  (dead-letter after isolating the events at fault).
- One pooled HTTP session; TLS certificates are verified unless ``verify_tls = false``.
"""

from __future__ import annotations

import asyncio
from operator import attrgetter
from typing import Any

import aiohttp

from ivrstream.clock import Clock
from ivrstream.config import WebhookSettings
from ivrstream.errors import ConfigError
from ivrstream.logs import register_secret
from ivrstream.sinks.base import Delivery, Outcome
from ivrstream.webhooks import batch_id, parse_secret, sign

RETRYABLE = frozenset({408, 425, 429})
SIGN_ASIDE_BYTES = 64 * 1024  # bodies this long are signed off the event loop
_BODY = attrgetter("body")
_EVENT_ID = attrgetter("event_id")


def retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class WebhookSink:
    def __init__(self, settings: WebhookSettings, clock: Clock, name: str = "webhook") -> None:
        if not settings.url:
            raise ConfigError("sinks.webhook.url", "set WEBHOOK_URL (or sinks.webhook.url)")
        if not settings.url.startswith(("http://", "https://")):
            raise ConfigError("sinks.webhook.url", f"must be an http(s) URL: {settings.url}")
        self.name = name
        self.settings = settings
        self.url = settings.url
        self.clock = clock
        self._key: bytes | None = None
        if settings.secret:
            register_secret(settings.secret)
            try:
                self._key = parse_secret(settings.secret)
            except ValueError as exc:
                raise ConfigError("sinks.webhook.secret", str(exc)) from None
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.failures = 0
        self.last_status: int | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=max(2, self.settings.lanes * 2), ssl=self.settings.verify_tls
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver(self, batch: list[Delivery]) -> Outcome:
        if self.settings.mode == "single":
            for delivery in batch:
                outcome = await self._post(delivery.body, delivery.event_id)
                if outcome.verdict != "ok":
                    return outcome  # the ones before were delivered; receivers de-duplicate
            return Outcome.ok()
        if len(batch) == 1:
            return await self._post(b"[" + batch[0].body + b"]", batch[0].event_id)
        body = b"[" + b",".join(map(_BODY, batch)) + b"]"
        return await self._post(body, batch_id(list(map(_EVENT_ID, batch))))

    async def _post(self, body: bytes, message_id: str) -> Outcome:
        session = self._session
        assert session is not None, "start() first"
        headers = {"Content-Type": "application/json", "User-Agent": "ivrstream"}
        if self._key is not None:
            timestamp = int(self.clock.time())
            if len(body) >= SIGN_ASIDE_BYTES:  # a batch: sign on a worker thread, not the loop
                signed = await asyncio.to_thread(sign, self._key, message_id, timestamp, body)
            else:
                signed = sign(self._key, message_id, timestamp, body)
            headers.update(signed)
        else:
            headers["webhook-id"] = message_id
        self.requests += 1
        try:
            async with session.post(self.url, data=body, headers=headers) as response:
                status = response.status
                self.last_status = status
                if 200 <= status < 300:
                    await response.read()
                    return Outcome.ok()
                detail = (await response.text())[:200]
                wait = retry_after(response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.failures += 1
            return Outcome.retry(f"{type(exc).__name__}: {exc}")
        self.failures += 1
        error = f"HTTP {status}: {detail}".strip()
        if status == 410:
            return Outcome.gone(error)
        if status in RETRYABLE or status >= 500:
            return Outcome.retry(error, wait)
        return Outcome.reject(error)

    def statistics(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "failures": self.failures,
            "last_status": self.last_status,
        }
