"""``ivrstream validate``: check a configuration and its subscription without connecting."""

from __future__ import annotations

from typing import Any

from ivrstream import config as configuration
from ivrstream.config import Config
from ivrstream.errors import ConfigError
from ivrstream.protocol.eventstreams import (
    MAX_PAYLOAD_BYTES,
    build_subscription,
    check_subscription_bytes,
    encode_subscription,
)


def verdict(config: Config) -> dict[str, Any]:
    """Everything ``validate`` can tell without a network: ``ok`` and each problem by field."""
    problems: list[dict[str, str]] = []
    result: dict[str, Any] = {"source": config.source, "problems": problems}
    try:
        endpoints = configuration.endpoints(config)
        result["endpoints"] = {
            "token_url": endpoints.token_url,
            "api_url": endpoints.api_url,
            "events_url": endpoints.events_url,
        }
    except ConfigError as exc:
        problems.append({"field": exc.field, "message": exc.message})
    for check in (configuration.client_id, configuration.client_secret):
        if config.genesys.grant == "jwt" and check is configuration.client_secret:
            continue
        try:
            check(config)
        except ConfigError as exc:
            problems.append({"field": exc.field, "message": exc.message})
    es = config.eventstreams
    subscription = build_subscription(
        event_type=es.event_type,
        data_types=es.data_types,
        filters=es.filters,
        retry=es.retry,
        content_type=es.content_type,
        interaction_id=es.interaction_id,
    )
    payload = encode_subscription(subscription)
    checked = check_subscription_bytes(payload)
    result["subscription"] = {
        "payload": payload.decode(),
        "bytes": checked.byte_size,
        "limit": MAX_PAYLOAD_BYTES,
    }
    for violation in checked.violations:
        problems.append(
            {"field": f"eventstreams.subscription.{violation.field}", "message": violation.message}
        )
    result["ok"] = not problems
    return result
