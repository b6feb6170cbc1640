"""``ivrstream status``: ask a running service (``run --metrics``) how it is doing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:9464"


class Unreachable(Exception):
    """Nothing (or nothing like ivrstream) answered: the message says what to check."""


def fetch(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The service's ``/status`` document (``url`` is the server's base URL)."""
    base = url.rstrip("/").removesuffix("/status")
    if not base.startswith(("http://", "https://")):
        raise Unreachable(f"{url} is not an http:// or https:// URL")
    target = f"{base}/status"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 - checked
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise Unreachable(
            f"{target} answered {exc.code}: is this an ivrstream service (run --metrics)?"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(
            f"nothing answers at {target} ({reason}); start the service with"
            f" `ivrstream run --metrics {base.split('://', 1)[1]}` or pass --url"
        ) from None
    try:
        data = json.loads(body)
    except ValueError:
        raise Unreachable(
            f"{target} did not answer with JSON: is it an ivrstream service?"
        ) from None
    if not isinstance(data, dict) or "ready" not in data:
        raise Unreachable(f"{target} answered JSON that is not an ivrstream status")
    return data


# -- rendering -------------------------------------------------------------------------------------


def render(data: dict[str, Any], console: Console) -> None:
    """The status as a few compact tables that fit in 80 columns."""
    console.print(_headline(data))
    console.print(Group(_overview(data), _sinks(data), _ivr(data), _history(data)))


def _headline(data: dict[str, Any]) -> Text:
    ready = data.get("ready") or {}
    service = data.get("service") or {}
    text = Text("ivrstream ")
    text.append(str(service.get("version", "?")))
    uptime = service.get("uptime_seconds")
    if uptime is not None:
        text.append(f" · up {_duration(uptime)}")
    text.append(" · ")
    if ready.get("ready"):
        text.append("READY", style="bold green")
    else:
        text.append("NOT READY", style="bold red")
        text.append(f": {ready.get('reason')}")
    return text


def _overview(data: dict[str, Any]) -> Table:
    table = Table(title="service", title_justify="left", show_header=False, box=None, expand=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold", max_width=62)
    conn = data.get("connection") or {}
    sub = data.get("subscription") or {}
    table.add_row("source", f"{conn.get('source') or 'none'}: {conn.get('state')}")
    if sub.get("id"):
        table.add_row("subscription", str(sub["id"]))
    elif sub.get("topics") is not None:
        table.add_row("topics", f"{sub['topics']:,} on {sub.get('channels')} channel(s)")
    reconnects = conn.get("reconnects") or {}
    if reconnects:
        shown = ", ".join(f"{r} {n}" for r, n in sorted(reconnects.items()))
        table.add_row("reconnects", shown)
    last = data.get("last") or {}
    event = _ago(last.get("event_seconds_ago"))
    heartbeat = _ago(last.get("heartbeat_seconds_ago"))
    limit = last.get("idle_limit_seconds")
    shown = f"{event}; heartbeat {heartbeat}"
    table.add_row("last event", shown if limit is None else f"{shown} (idle limit {limit:g}s)")
    rates = data.get("rates") or {}
    received = rates.get("received") or {}
    table.add_row(
        "received", f"{_rate(received.get('1s'))}/s (1 s), {_rate(received.get('1m'))}/s (1 min)"
    )
    latency = data.get("latency") or {}
    for name, label in (
        ("receive_to_commit", "receive→commit"),
        ("event_to_commit", "event→commit"),
    ):
        figures = latency.get(name) or {}
        table.add_row(
            label,
            f"p50 {_ms(figures.get('p50_ms'))}  p90 {_ms(figures.get('p90_ms'))}"
            f"  p99 {_ms(figures.get('p99_ms'))}",
        )
    journal = data.get("journal") or {}
    table.add_row(
        "journal",
        f"{journal.get('last_position', 0):,} events, {journal.get('quarantined', 0)} quarantined"
        f"{'' if journal.get('writable', True) else ', NOT WRITABLE'}",
    )
    gaps = data.get("gaps") or {}
    by_state = gaps.get("by_state") or {}
    states = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in sorted(by_state.items()))
    table.add_row(
        "gaps", f"{states or 'none'}; {gaps.get('events_backfilled', 0)} events backfilled"
    )
    auth = data.get("auth") or {}
    table.add_row(
        "tokens",
        f"{auth.get('token_refreshes', 0)} obtained, {auth.get('token_failures', 0)} failed",
    )
    return table


def _sinks(data: dict[str, Any]) -> Table:
    table = Table(title="sinks", title_justify="left", expand=False)
    for name, justify in (
        ("sink", "left"),
        ("state", "left"),
        ("delivered", "right"),
        ("/s", "right"),
        ("backlog", "right"),
        ("oldest", "right"),
        ("retry", "right"),
        ("dead", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    sinks = data.get("sinks") or {}
    for name, sink in sorted(sinks.items()):
        table.add_row(
            name[:12],
            str(sink.get("state"))[:10],
            f"{sink.get('delivered', 0):,}",
            _rate((sink.get("rate") or {}).get("1m")),
            f"{sink.get('backlog', 0):,}",
            _age(sink.get("oldest_undelivered_seconds")),
            f"{sink.get('retries', 0):,}",
            f"{sink.get('dead_lettered', 0):,}",
        )
    if not sinks:
        table.add_row("none", "", "", "", "", "", "", "")
    return table


def _ivr(data: dict[str, Any]) -> Table:
    ivr = data.get("ivr") or {}
    containment = ivr.get("containment")
    title = (
        f"IVR: {ivr.get('active_calls', 0)} active, {ivr.get('transfers', 0)} transfers,"
        f" {ivr.get('abandons', 0)} abandons, containment {_percent(containment)}"
    )
    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("flow", no_wrap=True, max_width=28, overflow="ellipsis")
    table.add_column("active", justify="right")
    table.add_column("started", justify="right")
    table.add_column("transfers", justify="right")
    table.add_column("contained", justify="right")
    for flow in (ivr.get("flows") or [])[:15]:
        table.add_row(
            str(flow.get("name") or flow.get("flow")),
            f"{flow.get('active', 0):,}",
            f"{flow.get('started', 0):,}",
            f"{flow.get('transfers', 0):,}",
            _percent(flow.get("containment")),
        )
    return table


def _history(data: dict[str, Any]) -> Table:
    table = Table(title="recent", title_justify="left", show_header=False, box=None)
    table.add_column("event", no_wrap=True)
    table.add_column("details", overflow="fold", max_width=60)
    history = data.get("history") or {}
    entries = [*(history.get("reconnects") or [])[-5:], *(history.get("gaps") or [])[-5:]]
    entries.sort(key=lambda e: e.get("at") or 0)
    at_now = (data.get("service") or {}).get("started_at", 0) + (data.get("service") or {}).get(
        "uptime_seconds", 0
    )
    for entry in entries:
        details = ", ".join(
            f"{k} {v}" for k, v in entry.items() if k not in ("at", "event") and v is not None
        )
        table.add_row(f"{_ago(at_now - (entry.get('at') or at_now))} {entry.get('event')}", details)
    if not entries:
        table.add_row("nothing yet", "")
    return table


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return f"{_duration(seconds)} ago"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else _duration(seconds)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g} ms"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"
