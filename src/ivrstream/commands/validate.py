"""``ivrstream validate``: check a configuration and its subscription without connecting."""

from __future__ import annotations

from typing import Any

from ivrstream import config as configuration
from ivrstream import privacy, sinks
from ivrstream.audit.keys import AuditKeyError, load_private_key
from ivrstream.clock import SystemClock
from ivrstream.config import Config
from ivrstream.errors import ConfigError
from ivrstream.protocol.coverage import budget
from ivrstream.protocol.eventstreams import (
    MAX_PAYLOAD_BYTES,
    build_subscription,
    check_subscription_bytes,
    encode_subscription,
)

CHANNELS_PATH = "/api/v2/notifications/channels"
CHANNEL_LIFETIME = 24 * 3600.0  # Genesys: channels live 24 hours


def verdict(config: Config) -> dict[str, Any]:
    """Everything ``validate`` can tell without a network: ``ok`` and each problem by field."""
    problems: list[dict[str, str]] = []
    result: dict[str, Any] = {"source": config.source, "problems": problems}
    try:
        endpoints = configuration.endpoints(config)
        result["endpoints"] = {
            "token_url": endpoints.token_url,
            "api_url": endpoints.api_url,
        }
        if config.source == "notifications":
            result["endpoints"]["channels_url"] = endpoints.api_url + CHANNELS_PATH
        else:
            result["endpoints"]["events_url"] = endpoints.events_url
    except ConfigError as exc:
        problems.append({"field": exc.field, "message": exc.message})
    for check in (configuration.client_id, configuration.client_secret):
        if config.genesys.grant == "jwt" and check is configuration.client_secret:
            continue
        try:
            check(config)
        except ConfigError as exc:
            problems.append({"field": exc.field, "message": exc.message})
    if config.source == "notifications":
        result["notifications"] = _notifications(config, problems)
    else:
        result["subscription"] = _subscription(config, problems)
    result["sinks"] = _sinks(config, problems)
    result["privacy"] = _privacy(config, problems)
    result["audit"] = _audit(config, problems)
    result["ok"] = not problems
    return result


def _subscription(config: Config, problems: list[dict[str, str]]) -> dict[str, Any]:
    """The Event Streams subscription message and its size against the limit."""
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
    for violation in checked.violations:
        problems.append(
            {"field": f"eventstreams.subscription.{violation.field}", "message": violation.message}
        )
    return {"payload": payload.decode(), "bytes": checked.byte_size, "limit": MAX_PAYLOAD_BYTES}


def _notifications(config: Config, problems: list[dict[str, str]]) -> dict[str, Any]:
    """The topic budget: base topics and their channels, the cost of one conversation and how
    many fit at once; ids that are not UUIDs, limits beyond Genesys' and a renewal that would
    come after the channel expired are problems (signs and ranges: ``config.check``)."""
    settings = config.notifications
    planned = budget(settings)
    problems.extend({"field": name, "message": message} for name, message in planned.problems)
    if settings.renew_before >= CHANNEL_LIFETIME:
        problems.append(
            {
                "field": "notifications.renew_before",
                "message": f"must be less than a channel's lifetime ({CHANNEL_LIFETIME:.0f} s)",
            }
        )
    return {
        "coverage": list(settings.coverage),
        "base_topics": planned.base_topics,
        "channels": planned.base_channels,
        "max_channels": planned.max_channels,
        "topics_per_channel": planned.topics_per_channel,
        "conversation_units": planned.conversation_units,
        "conversation_cost": planned.conversation_cost,
        "concurrent_conversations": planned.concurrent_conversations,
        "released_on_end": planned.released_on_end,
        "combined_counts_parts": planned.combined_counts_parts,
        # flow_names (or, without flow_ids, every INBOUNDCALL flow) are looked up at start
        "flows_resolved_at_start": "flows" in settings.coverage
        and bool(settings.flow_names or not settings.flow_ids),
    }


_TARGET = {"webhook": "url", "postgres": "dsn", "nats": "servers", "jsonl": "path"}


def _sinks(config: Config, problems: list[dict[str, str]]) -> dict[str, Any]:
    """Each configured sink and where it delivers (passwords redacted); building one checks its
    settings without connecting."""
    shown = configuration.redacted(config)["sinks"]
    out = {}
    for name, settings in sinks.configured(config):
        out[name] = shown[name][_TARGET[name]]
        try:
            sinks.build_one(settings, SystemClock())
        except ConfigError as exc:
            problems.append({"field": exc.field, "message": exc.message})
    return out


def _privacy(config: Config, problems: list[dict[str, str]]) -> dict[str, Any]:
    settings = config.privacy
    if not settings.enabled:
        return {"enabled": False}
    rules = [privacy.Rule(r.path, r.action, r.keep_last) for r in settings.rules or []]
    try:
        privacy.Redactor(
            [*rules, *privacy.DEFAULT_RULES], bytes(privacy.MIN_KEY_BYTES), scan_cards=False
        )
    except ConfigError as exc:
        problems.append({"field": exc.field, "message": exc.message})
    except ValueError as exc:
        problems.append({"field": "privacy.rules", "message": str(exc)})
    return {
        "enabled": True,
        "rules": len(rules),
        "default_rules": len(privacy.DEFAULT_RULES),
        "scan_cards": settings.scan_cards,
        "key_file": settings.key_file or f"{config.journal.path}.privacy-key",
    }


def _audit(config: Config, problems: list[dict[str, str]]) -> dict[str, Any]:
    settings = config.audit
    if not settings.directory:
        return {"enabled": False}
    signed = False
    try:
        signed = load_private_key(settings.signing_key_file) is not None
    except (AuditKeyError, OSError) as exc:
        problems.append({"field": "audit.signing_key_file", "message": str(exc)})
    return {"enabled": True, "directory": settings.directory, "signed_checkpoints": signed}
