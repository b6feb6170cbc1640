"""Configuration: one TOML file plus environment variables for secrets.

Precedence: built-in defaults < the TOML file < environment variables. The seed's variables
keep working: ``GENESYS_ENV`` (region or domain), ``GENESYS_CLIENT_ID``,
``GENESYS_CLIENT_SECRET``, ``GENESYS_TENANT_URL`` (a base URL that overrides the region — how the
emulator is addressed). Every problem is a :class:`~ivrstream.errors.ConfigError` naming the
field; secrets never appear in messages or in :func:`redacted`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from ivrstream.errors import ConfigError
from ivrstream.regions import REGIONS, domain_for

SECRET_FIELDS = frozenset({"client_secret", "secret", "key"})
_URL_PASSWORD = re.compile(r"(://[^:/@]+:)[^@/]*@")  # user:password@host → user:[redacted]@host


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class GenesysSettings(_Section):
    region: str | None = None  # GENESYS_ENV
    tenant_url: str | None = None  # GENESYS_TENANT_URL
    client_id: str | None = None  # GENESYS_CLIENT_ID
    client_secret: str | None = None  # GENESYS_CLIENT_SECRET (keep it out of the file)
    client_secret_file: str | None = None
    grant: Literal["client_credentials", "jwt"] = "client_credentials"
    jwt_private_key_file: str | None = None
    jwt_algorithm: Literal["RS256", "ES256", "EdDSA"] = "RS256"
    token_url: str | None = None  # override the derived OAuth URL
    api_url: str | None = None  # override the derived REST base URL
    max_retry_after: float = 180.0  # give up on a 429 that asks for longer


class EventStreamsSettings(_Section):
    url: str | None = None  # override the derived wss://…/api/v2/events
    event_type: str = "interaction:updated"
    data_types: list[str] = msgspec.field(default_factory=lambda: ["interaction"])
    filters: dict[str, str] = msgspec.field(
        default_factory=lambda: {"interaction.routing.type": "IVR"}
    )
    interaction_id: str | None = None  # shorthand for filters["interaction.id"] = "eq:<id>"
    retry: int = 60
    content_type: str = "application/msgpack"
    idle_timeout: float = 60.0  # reconnect when nothing arrives for this long
    subscribe_timeout: float = 10.0
    max_frame_bytes: int = 1_048_576
    token_in_query: bool = False  # the seed's ?access_token= (ends up in proxy logs: avoid)


Coverage = Literal["flows", "queues", "conversations"]
DetailKind = Literal[
    "flow.start",
    "flow.end",
    "flow.outcome",
    "customer.start",
    "customer.end",
    "acd.start",
    "acd.end",
    "attributes",
]


class NotificationsSettings(_Section):
    """The public Notifications API (``source = "notifications"``). Facts Genesys does not
    document are settings here, with the reference's defaults."""

    # how conversations are found (any of): per-flow metric topics of the IVR flows, queue
    # conversation topics, and per-conversation detail topics for every conversation found
    coverage: list[Coverage] = msgspec.field(default_factory=lambda: ["flows", "conversations"])
    flow_ids: list[str] = msgspec.field(default_factory=list)  # none: every INBOUNDCALL flow
    flow_names: list[str] = msgspec.field(default_factory=list)  # resolved via GET /api/v2/flows
    queue_ids: list[str] = msgspec.field(default_factory=list)
    detail_kinds: list[DetailKind] = msgspec.field(
        default_factory=lambda: [
            "flow.start",
            "flow.end",
            "flow.outcome",
            "customer.start",
            "customer.end",
            "acd.start",
            "acd.end",
            "attributes",
        ]
    )
    max_channels: int = 10  # of the client's 20: leave room for other users of the client
    topics_per_channel: int = 1_000
    conversation_ttl: float = 4 * 3600.0  # release a conversation's topics after this long
    discovery_interval: float = 60.0  # details query for conversations in progress (0: off)
    heartbeat_timeout: float = 75.0  # no heartbeat or event this long → ping (observed: 30 s)
    pong_timeout: float = 10.0  # no pong this long after a ping → reconnect
    renew_before: float = 3600.0  # re-subscribe this long before a channel expires (24 h)
    reorder_window: float = 2.0  # per-conversation event-time reordering


class BackfillSettings(_Section):
    """Filling gaps from ``/api/v2/analytics/conversations/details``."""

    enabled: bool = True
    page_size: int = 100  # maximum unconfirmed; halved on HTTP 400
    settle: float = 60.0  # never query closer to now than this (totalHits moves while live)
    jobs_over: float = 6 * 3600.0  # windows longer than this use the async jobs API
    segment_filter_purpose: str = "ivr"  # participants[].purpose that marks an IVR conversation
    max_retry_after: float = 180.0
    # a gap's events may belong to conversations that started before it: query this far back
    lookback: float = 2 * 3600.0
    check_every: float = 30.0  # how often open gaps are looked for
    resend_grace: float = 30.0  # an Event Streams gap first gets this long to be re-sent
    # also filter on conversationStart (a documented conversation dimension; that it narrows
    # the day-matched scan is unconfirmed): without it, a short window late in a busy day pages
    # through every conversation of that day
    start_filter: bool = True


class ReconnectSettings(_Section):
    base: float = 1.0
    cap: float = 30.0
    max_attempts: int = 0  # 0: keep trying at the cap (reporting unhealthy)
    stable_after: float = 10.0  # a socket open this long counts as a success


class OrderingSettings(_Section):
    window_size: int = 1_000
    window_seconds: float = 2.0


class JournalSettings(_Section):
    path: str = "ivrstream.db"
    synchronous: Literal["normal", "full", "NORMAL", "FULL"] = "normal"
    batch_max: int = 5_000
    flush_interval: float = 0.002
    max_pending: int = 50_000  # uncommitted events before intake stops reading
    max_pending_bytes: int = 64 * 1024 * 1024  # … or uncommitted bytes, whichever comes first


class SinkSettings(_Section):
    """What every sink has: batching, the retry budget and parallel lanes."""

    batch_max: int = 500  # events per delivery
    max_attempts: int = 12  # tries per batch before its events are dead-lettered
    retry_base: float = 0.5  # first retry delay ceiling (seconds; full jitter)
    retry_cap: float = 30.0  # retry delays stop growing here
    lanes: int = 4  # deliveries in flight; events of one conversation always share a lane


class WebhookSettings(SinkSettings):
    url: str | None = None  # WEBHOOK_URL
    secret: str | None = None  # WEBHOOK_SECRET ("whsec_…", Standard Webhooks); keep it in env
    mode: Literal["batch", "single"] = "batch"  # a JSON array per request, or one event each
    timeout: float = 5.0  # seconds per request
    verify_tls: bool = True


class PostgresSettings(SinkSettings):
    dsn: str | None = None  # IVRSTREAM_POSTGRES_DSN, e.g. postgresql://user@host/db
    schema_name: str = "public"


class NatsSettings(SinkSettings):
    servers: list[str] = msgspec.field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    stream: str = "IVR_EVENTS"
    subject_prefix: str = "ivr.events"  # subjects: <prefix>.<event_type>.<conversation_id>
    credentials_file: str | None = None


class JsonlSettings(SinkSettings):
    path: str = "ivrstream-events.jsonl"


class SinksSettings(_Section):
    webhook: WebhookSettings | None = None
    postgres: PostgresSettings | None = None
    nats: NatsSettings | None = None
    jsonl: JsonlSettings | None = None


class PrivacyRule(_Section):
    path: str  # dotted path inside the event's data: "ani", "attributes.*", "**.email"
    action: Literal["keep", "mask", "hash", "drop"]
    keep_last: int = 4  # digits a "mask" keeps


class PrivacySettings(_Section):
    """Caller privacy, applied before anything is stored (journal, sinks, audit, quarantine)."""

    enabled: bool = True
    key_file: str | None = None  # HMAC key for "hash"; default: <journal path>.privacy-key
    rules: list[PrivacyRule] | None = None  # None: the defaults (caller numbers hashed)
    scan_cards: bool = True  # mask anything that looks like a payment card number


class AuditSettings(_Section):
    directory: str | None = None  # where audit-*.jsonl files go; None: no audit trail
    max_bytes: int = 64 * 1024 * 1024  # rotate a file beyond this size (and every UTC day)
    fsync_interval: float = 1.0  # seconds; records are flushed per batch
    checkpoint_interval: float = 3600.0  # a checkpoint at least this often
    signing_key_file: str | None = None  # Ed25519 PEM (or IVRSTREAM_AUDIT_KEY); None: unsigned


class MetricsSettings(_Section):
    # /metrics, /livez, /readyz and /status on "host:port" (a bare port: 127.0.0.1); None: off
    listen: str | None = None


class Config(_Section):
    source: Literal["eventstreams", "notifications"] = "eventstreams"
    genesys: GenesysSettings = msgspec.field(default_factory=GenesysSettings)
    eventstreams: EventStreamsSettings = msgspec.field(default_factory=EventStreamsSettings)
    notifications: NotificationsSettings = msgspec.field(default_factory=NotificationsSettings)
    backfill: BackfillSettings = msgspec.field(default_factory=BackfillSettings)
    reconnect: ReconnectSettings = msgspec.field(default_factory=ReconnectSettings)
    ordering: OrderingSettings = msgspec.field(default_factory=OrderingSettings)
    journal: JournalSettings = msgspec.field(default_factory=JournalSettings)
    sinks: SinksSettings = msgspec.field(default_factory=SinksSettings)
    privacy: PrivacySettings = msgspec.field(default_factory=PrivacySettings)
    audit: AuditSettings = msgspec.field(default_factory=AuditSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)


ENVIRONMENT = {
    "GENESYS_ENV": ("genesys", "region"),
    "GENESYS_TENANT_URL": ("genesys", "tenant_url"),
    "GENESYS_CLIENT_ID": ("genesys", "client_id"),
    "GENESYS_CLIENT_SECRET": ("genesys", "client_secret"),
}
SINK_ENVIRONMENT = {  # setting the first of each enables the sink
    "WEBHOOK_URL": ("webhook", "url"),
    "WEBHOOK_SECRET": ("webhook", "secret"),
    "IVRSTREAM_POSTGRES_DSN": ("postgres", "dsn"),
}


@dataclass(frozen=True)
class Endpoints:
    token_url: str
    api_url: str
    events_url: str


def _field_of(error: msgspec.ValidationError) -> str:
    text = str(error)
    marker = "- at `$."
    where = text.split(marker, 1)[1].rstrip("`") if marker in text else ""
    if "unknown field `" in text:
        name = text.split("unknown field `", 1)[1].split("`", 1)[0]
        return f"{where}.{name}" if where else name
    return where or "config"


def from_mapping(raw: Mapping[str, Any]) -> Config:
    try:
        return msgspec.convert(dict(raw), Config, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc).split(" - at `")[0]
        raise ConfigError(_field_of(exc), message) from None


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the TOML file (if any), apply environment variables, check everything."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError("--config", f"no such file: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    for variable, (section, key) in ENVIRONMENT.items():
        value = env.get(variable)
        if value:
            table = raw.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(section, f"must be a table ([{section}]), not a value")
            table[key] = value
    sinks = raw.setdefault("sinks", {})
    if not isinstance(sinks, dict):
        raise ConfigError("sinks", "must be a table ([sinks.…]), not a value")
    for variable, (sink, key) in SINK_ENVIRONMENT.items():
        value = env.get(variable)
        # a URL or DSN in the environment switches its sink on; other variables only fill in
        if value and (key in ("url", "dsn") or sink in sinks):
            table = sinks.setdefault(sink, {})
            if not isinstance(table, dict):
                raise ConfigError(f"sinks.{sink}", "must be a table, not a value")
            table[key] = value
    config = from_mapping(raw)
    check(config)
    return config


def check(config: Config) -> None:
    """Range and consistency checks msgspec's types cannot express."""
    es, rc, ordering, journal = (
        config.eventstreams,
        config.reconnect,
        config.ordering,
        config.journal,
    )
    positive = {
        "eventstreams.idle_timeout": es.idle_timeout,
        "eventstreams.subscribe_timeout": es.subscribe_timeout,
        "eventstreams.max_frame_bytes": es.max_frame_bytes,
        "reconnect.base": rc.base,
        "reconnect.cap": rc.cap,
        "ordering.window_size": ordering.window_size,
        "journal.batch_max": journal.batch_max,
        "journal.max_pending": journal.max_pending,
        "journal.max_pending_bytes": journal.max_pending_bytes,
        "notifications.heartbeat_timeout": config.notifications.heartbeat_timeout,
        "notifications.pong_timeout": config.notifications.pong_timeout,
        "notifications.conversation_ttl": config.notifications.conversation_ttl,
        "backfill.page_size": config.backfill.page_size,
        "backfill.jobs_over": config.backfill.jobs_over,
        "backfill.check_every": config.backfill.check_every,
        "backfill.max_retry_after": config.backfill.max_retry_after,
    }
    for name, value in positive.items():
        if not value > 0:  # also refuses NaN
            raise ConfigError(name, f"must be greater than 0, got {value}")
    if rc.max_attempts < 0:
        raise ConfigError("reconnect.max_attempts", "must be ≥ 0 (0 means keep trying)")
    if ordering.window_seconds < 0:
        raise ConfigError("ordering.window_seconds", "must be ≥ 0")
    if journal.flush_interval < 0:
        raise ConfigError("journal.flush_interval", "must be ≥ 0")
    not_negative = {
        "notifications.discovery_interval": config.notifications.discovery_interval,
        "notifications.renew_before": config.notifications.renew_before,
        "notifications.reorder_window": config.notifications.reorder_window,
        "backfill.settle": config.backfill.settle,
        "backfill.lookback": config.backfill.lookback,
        "backfill.resend_grace": config.backfill.resend_grace,
    }
    for name, value in not_negative.items():
        if not value >= 0:
            raise ConfigError(name, f"must be ≥ 0, got {value}")
    if config.genesys.grant == "jwt" and not config.genesys.jwt_private_key_file:
        raise ConfigError("genesys.jwt_private_key_file", "the jwt grant needs a private key file")
    if config.metrics.listen is not None:
        try:
            listen_address(config.metrics.listen)
        except ValueError as exc:
            raise ConfigError("metrics.listen", str(exc)) from None


def listen_address(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare port (on 127.0.0.1, never every interface)."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    host = host.removeprefix("[").removesuffix("]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port or a port (0-65535), e.g. 127.0.0.1:9464")
    return host, int(port)


def endpoints(config: Config) -> Endpoints:
    """Where to get tokens, call the API and open Event Streams."""
    g = config.genesys
    if g.tenant_url:
        base = g.tenant_url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError("genesys.tenant_url", f"must start with http:// or https://: {base}")
        token_url = g.token_url or f"{base}/oauth/token"
        api_url = g.api_url or base
    elif g.region:
        domain = domain_for(g.region)
        if domain is None:
            known = ", ".join(name.replace("_", "-") for name in REGIONS)
            raise ConfigError(
                "genesys.region",
                f"unknown region {g.region!r} (from [genesys] region, GENESYS_ENV or --region);"
                f" use a region ({known}) or its domain, such as mypurecloud.ie",
            )
        token_url = g.token_url or f"https://login.{domain}/oauth/token"
        api_url = g.api_url or f"https://api.{domain}"
    else:
        raise ConfigError(
            "genesys.region",
            "set GENESYS_ENV (a region, e.g. us-east-1) or GENESYS_TENANT_URL (a base URL)",
        )
    events_url = config.eventstreams.url or (
        api_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + "/api/v2/events"
    )
    return Endpoints(token_url, api_url, events_url)


def client_secret(config: Config) -> str:
    g = config.genesys
    if g.client_secret:
        return g.client_secret
    if g.client_secret_file:
        try:
            return Path(g.client_secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError("genesys.client_secret_file", f"cannot read it: {exc}") from None
    raise ConfigError("genesys.client_secret", "set GENESYS_CLIENT_SECRET (or client_secret_file)")


def client_id(config: Config) -> str:
    if not config.genesys.client_id:
        raise ConfigError("genesys.client_id", "set GENESYS_CLIENT_ID (or genesys.client_id)")
    return config.genesys.client_id


def redacted(config: Config) -> dict[str, Any]:
    """The configuration as a dict with every secret replaced (safe to print, log or hash):
    secret fields, and passwords inside URLs and DSNs."""
    data: dict[str, Any] = msgspec.to_builtins(config)
    return _redact(data)  # type: ignore[no-any-return]


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if key in SECRET_FIELDS and value:
        return "[redacted]"
    if isinstance(value, str) and "://" in value and "@" in value:
        return _URL_PASSWORD.sub(r"\1[redacted]@", value)
    return value
