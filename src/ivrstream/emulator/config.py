"""Every knob of the emulator, with defaults that behave like Genesys Cloud (or the reference)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ivrstream.emulator.faults import FaultSettings

DEFAULT_SCOPES = ("view:interaction", "analytics", "notifications")
ALL_PERMISSIONS = frozenset(
    {
        "analytics:conversationDetail:view",
        "analytics:flowMetrics:view",
        "routing:queue:view",
        "architect:flow:view",
    }
)


@dataclass
class ClientSpec:
    """An OAuth client the emulator accepts."""

    client_id: str = "demo-client"
    secret: str = "demo-secret"  # noqa: S105 - the documented demo credential
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    permissions: frozenset[str] = ALL_PERMISSIONS
    jwt_public_key: bytes | None = None  # PEM of the key that signs this client's JWT assertions


@dataclass
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 1
    # traffic
    traffic: bool = True  # False: no calls at all (protocol tests)
    rate: float = 2.0  # call arrivals per second of clock time
    time_scale: float = 30.0  # nominal call durations are divided by this
    history: float = 0.0  # seconds of traffic that "already happened" (analytics only)
    tick: float = 0.005  # the driver publishes due facts at least this often (seconds)
    # OAuth
    clients: list[ClientSpec] = field(default_factory=lambda: [ClientSpec()])
    token_ttl: int = 86_400  # expires_in of issued tokens, seconds
    # Event Streams
    max_connections: int = 100  # per organisation
    schema_evolution_share: float = 0.0  # share of events carrying extra, unannounced fields
    close_on_token_expiry: bool = True  # close a socket with 4001 when its token expires
    subscribe_timeout: float = 10.0  # seconds a new socket has to send its subscription
    send_queue_limit: int = 200_000  # frames queued for one slow socket before it is cut off
    # Notifications
    max_channels: int = 20  # per OAuth client; the 21st evicts the least recently used
    max_topics: int = 1_000  # per channel
    max_combined_topic_length: int = 200
    channel_ttl: float = 86_400.0  # seconds a channel lives unless re-subscribed
    heartbeat_interval: float = 30.0  # seconds between channel.metadata heartbeats
    socket_closing_grace: float = 60.0  # seconds between v2.system.socket_closing and the close
    flow_metrics_websocket: bool = True  # does the WebSocket transport carry flow metrics topics?
    # Analytics
    analytics_delay: float = 0.0  # seconds before a fact is visible to analytics queries
    max_page_size: int = 100  # details query pageSize above this answers 400
    job_delay: float = 0.5  # seconds a details job stays QUEUED/PENDING before FULFILLED
    job_page_size: int = 1_000  # conversations per page of job results
    retained_calls: int = 500_000  # calls kept for analytics; the oldest are forgotten first
    job_ttl: float = 86_400.0  # seconds after submission a details job turns EXPIRED
    analytics_cache: int = 20_000  # ended conversations kept rendered between queries (~4 KB each)
    # Fast mode (benchmarks)
    fast_frames: int = 0  # > 0: each subscription first gets this many pre-encoded events
    fast_frame_bytes: int = 1_000  # approximate size of each fast-mode frame
    fast_batch: int = 512  # frames per socket write (1: one send per frame, the baseline)
    faults: FaultSettings = field(default_factory=FaultSettings)
    ledger_limit: int = 2_000_000

    def client(self, client_id: str) -> ClientSpec | None:
        return next((c for c in self.clients if c.client_id == client_id), None)
