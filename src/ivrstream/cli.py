"""The ``ivrstream`` command line: a thin layer over the library.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error (the message names the
option or field).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import msgspec

from ivrstream.emulator.config import ClientSpec, EmulatorConfig
from ivrstream.emulator.faults import FaultSpecError, parse_spec
from ivrstream.errors import ConfigError

if TYPE_CHECKING:
    from ivrstream.config import Config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ivrstream")
def main() -> None:
    """Every Genesys Cloud IVR event, once, in order, durably, with an audit trail."""


def _faults(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    try:
        return parse_spec(value or "")
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc)) from None


def _read_key(ctx: click.Context, param: click.Parameter, value: Path | None) -> bytes | None:
    return value.read_bytes() if value is not None else None


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind; 0 picks a free one.",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound port to this file once listening.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same traffic.")
@click.option(
    "--rate",
    default=2.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Call arrivals per second.",
)
@click.option(
    "--time-scale",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Divide nominal call durations by this (1 = real time).",
)
@click.option(
    "--history",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds of traffic that already happened (visible to analytics only).",
)
@click.option("--no-traffic", is_flag=True, help="Generate no calls at all.")
@click.option(
    "--faults",
    "fault_settings",
    callback=_faults,
    help="Standing faults, e.g. 'drop_after=300,duplicate=0.01'.",
)
@click.option("--client-id", default="demo-client", show_default=True)
@click.option(
    "--client-secret", default="demo-secret", show_default=True, envvar="IVRSTREAM_EMULATOR_SECRET"
)
@click.option(
    "--jwt-public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=_read_key,
    help="PEM public key accepted for the JWT bearer grant.",
)
@click.option(
    "--token-ttl",
    default=86_400,
    show_default=True,
    type=click.IntRange(min=1),
    help="expires_in of issued tokens (seconds).",
)
@click.option(
    "--schema-evolution",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of events with unannounced extra fields.",
)
@click.option(
    "--heartbeat-interval",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Notifications heartbeat period.",
)
@click.option(
    "--channel-ttl",
    default=86_400.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Notification channel lifetime.",
)
@click.option(
    "--fast-frames",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Fast mode: pre-encoded events each new subscription receives first.",
)
@click.option("--fast-frame-bytes", default=1_000, show_default=True, type=click.IntRange(min=100))
@click.option(
    "--fast-batch",
    default=512,
    show_default=True,
    type=click.IntRange(min=1),
    help="Fast-mode frames per socket write (1 = one send per frame).",
)
@click.option("--show", is_flag=True, help="Show the traffic it generates.")
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
def emulator(
    host: str,
    port: int,
    port_file: Path | None,
    seed: int,
    rate: float,
    time_scale: float,
    history: float,
    no_traffic: bool,
    fault_settings: object,
    client_id: str,
    client_secret: str,
    jwt_public_key: bytes | None,
    token_ttl: int,
    schema_evolution: float,
    heartbeat_interval: float,
    channel_ttl: float,
    fast_frames: int,
    fast_frame_bytes: int,
    fast_batch: int,
    show: bool,
    duration: float | None,
) -> None:
    """Run a local Genesys Cloud: OAuth, Event Streams, Notifications, analytics, IVR traffic."""
    from ivrstream.emulator.faults import FaultSettings
    from ivrstream.emulator.runner import serve

    assert isinstance(fault_settings, FaultSettings)
    config = EmulatorConfig(
        host=host,
        port=port,
        seed=seed,
        traffic=not no_traffic,
        rate=rate,
        time_scale=time_scale,
        history=history,
        clients=[
            ClientSpec(client_id=client_id, secret=client_secret, jwt_public_key=jwt_public_key)
        ],
        token_ttl=token_ttl,
        schema_evolution_share=schema_evolution,
        heartbeat_interval=heartbeat_interval,
        channel_ttl=channel_ttl,
        fast_frames=fast_frames,
        fast_frame_bytes=fast_frame_bytes,
        fast_batch=fast_batch,
        faults=fault_settings,
    )
    asyncio.run(serve(config, port_file=port_file, show=show, duration=duration))


@main.command()
@click.option(
    "--duration",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds of traffic (faults are injected along the way, scaled to it).",
)
@click.option(
    "--rate",
    default=8.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Call arrivals per second.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same traffic.")
@click.option("--json", "as_json", is_flag=True, help="Print only the summary, as JSON.")
def demo(duration: float, rate: float, seed: int, as_json: bool) -> None:
    """See it work: emulator, service and webhook receiver in one process, faults injected,
    then a summary of what was generated, journaled and delivered (exit 0: nothing lost or
    duplicated and the audit trail verifies)."""
    from rich.console import Console

    from ivrstream.commands.demo import DemoSettings, quiet_logs
    from ivrstream.commands.demo import main as run_demo

    quiet_logs()
    settings = DemoSettings(duration=duration, rate=rate, seed=seed)
    sys.exit(asyncio.run(run_demo(settings, Console(), as_json=as_json)))


# -- configuration ---------------------------------------------------------------------------------

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="IVRSTREAM_CONFIG",
    help="TOML configuration file (secrets come from the environment).",
)


def config_error(exc: ConfigError) -> NoReturn:
    click.echo(f"ivrstream: configuration error: {exc.field}: {exc.message}", err=True)
    sys.exit(2)


def load_config(path: Path | None, **overrides: Any) -> Config:
    """The configuration from ``path`` and the environment, with command-line ``overrides``
    (``section.key`` → value); a mistake exits 2 naming the field."""
    from ivrstream import config as configuration

    try:
        loaded = configuration.load(path)
        raw = msgspec.to_builtins(loaded)
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if key:
                raw.setdefault(section, {})[key] = value
            else:
                raw[section] = value
        config = configuration.from_mapping(raw)
        configuration.check(config)
        return config
    except ConfigError as exc:
        config_error(exc)


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


# -- run and validate ------------------------------------------------------------------------------


@main.command()
@CONFIG_OPTION
@click.option(
    "--source",
    type=click.Choice(["eventstreams", "notifications"]),
    help="Which Genesys dialect to read (default from config: eventstreams).",
)
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False),
    help="Journal file (default from config: ivrstream.db).",
)
@click.option(
    "--region",
    help="Genesys region or domain (GENESYS_ENV), e.g. eu-west-1 or mypurecloud.ie;"
    " GENESYS_TENANT_URL overrides it.",
)
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.option("--max-events", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option(
    "--audit",
    "audit_dir",
    type=click.Path(file_okay=False),
    help="Keep the compliance audit trail in this directory (default from config).",
)
@click.option(
    "--metrics",
    "metrics_listen",
    metavar="[HOST:]PORT",
    help="Serve /metrics, /livez, /readyz and /status here, e.g. 127.0.0.1:9464 (a bare port"
    " binds 127.0.0.1; default from config [metrics] listen: off).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def run(
    config_path: Path | None,
    source: str | None,
    journal_path: str | None,
    region: str | None,
    duration: float | None,
    max_events: int | None,
    audit_dir: str | None,
    metrics_listen: str | None,
    log_level: str,
) -> None:
    """Subscribe and journal every event until stopped (SIGINT/SIGTERM: clean shutdown)."""
    from ivrstream import logs
    from ivrstream.commands.run import run as run_service

    logs.setup(log_level)
    config = load_config(
        config_path,
        source=source,
        **{
            "journal.path": journal_path,
            "audit.directory": audit_dir,
            "genesys.region": region,
            "metrics.listen": metrics_listen,
        },
    )
    try:
        code = asyncio.run(run_service(config, duration=duration, max_events=max_events))
    except ConfigError as exc:
        config_error(exc)
    sys.exit(code)


@main.command()
@click.option(
    "--url",
    default="http://127.0.0.1:9464",
    show_default=True,
    help="Where the service serves its metrics (ivrstream run --metrics).",
)
@click.option("--json", "as_json", is_flag=True, help="The service's /status document as JSON.")
def status(url: str, as_json: bool) -> None:
    """How a running service is doing: connection, rates, sink lags, gaps, IVR calls
    (exit 1 when nothing answers)."""
    from rich.console import Console

    from ivrstream.commands.status import Unreachable, fetch, render

    try:
        data = fetch(url)
    except Unreachable as exc:
        click.echo(f"ivrstream: {exc}", err=True)
        sys.exit(1)
    if as_json:
        echo_json(data)
    else:
        render(data, Console())


@main.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Machine-readable verdict.")
def validate(config_path: Path | None, as_json: bool) -> None:
    """Check the configuration and the subscription it builds, without connecting (exit 0/2)."""
    from ivrstream.commands.validate import verdict

    if as_json:  # a file that does not load is a verdict too, in the same shape
        from ivrstream import config as configuration

        try:
            loaded = configuration.load(config_path)
            configuration.check(loaded)
        except ConfigError as exc:
            echo_json({"ok": False, "problems": [{"field": exc.field, "message": exc.message}]})
            sys.exit(2)
    result = verdict(load_config(config_path))
    if as_json:
        echo_json(result)
    else:
        click.echo(f"source: {result['source']}")
        if "subscription" in result:
            sub = result["subscription"]
            click.echo(f"subscription: {sub['bytes']:,} of {sub['limit']:,} bytes")
            click.echo(f"  {sub['payload']}")
        for name, url in result.get("endpoints", {}).items():
            click.echo(f"{name}: {url}")
        if "notifications" in result:
            click.echo(_notifications_line(result["notifications"]))
        for name, target in result["sinks"].items():
            click.echo(f"sink {name}: {target}")
        if not result["sinks"]:
            click.echo("sinks: none (events are journaled only)")
        click.echo(_privacy_line(result["privacy"]))
        audit = result["audit"]
        if audit["enabled"]:
            signed = "signed" if audit["signed_checkpoints"] else "unsigned"
            click.echo(f"audit: {audit['directory']} ({signed} checkpoints)")
        else:
            click.echo("audit: off")
        for problem in result["problems"]:
            click.echo(f"PROBLEM {problem['field']}: {problem['message']}")
        click.echo("valid" if result["ok"] else f"invalid: {len(result['problems'])} problem(s)")
    sys.exit(0 if result["ok"] else 2)


@main.command()
@CONFIG_OPTION
@click.option("--from", "start", required=True, help="Window start, ISO-8601 (no offset: UTC).")
@click.option("--to", "end", required=True, help="Window end, ISO-8601 (exclusive).")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False), help="Journal file.")
@click.option("--region", help="Genesys region or domain (GENESYS_ENV), e.g. eu-west-1.")
@click.option("--dry-run", is_flag=True, help="Fetch and count what is missing; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable outcome.")
def backfill(
    config_path: Path | None,
    start: str,
    end: str,
    journal_path: str | None,
    region: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Fill a window of the journal from analytics conversation details (run it again to
    resume an interrupted window). Exits 0 when the window is done, 1 when part is left."""
    from ivrstream import logs
    from ivrstream.commands.backfill import backfill as run_backfill
    from ivrstream.isotime import TimeFormatError, parse_ms

    logs.setup("WARNING")
    try:
        start_ms, end_ms = parse_ms(start), parse_ms(end)
    except TimeFormatError as exc:
        raise click.BadParameter(str(exc)) from None
    if end_ms <= start_ms:
        raise click.BadParameter("--to must come after --from")
    config = load_config(config_path, **{"journal.path": journal_path, "genesys.region": region})
    with _backfill_progress(enabled=not as_json) as on_progress:
        try:
            report = asyncio.run(
                run_backfill(config, start_ms, end_ms, dry_run=dry_run, on_progress=on_progress)
            )
        except ConfigError as exc:
            config_error(exc)
    if as_json:
        echo_json(report)
    else:
        verb = "would journal" if dry_run else "journaled"
        click.echo(
            f"backfill {report['state']}: {report['conversations']} conversations,"
            f" {report['events']} events rebuilt, {verb} {report['inserted']} missing"
        )
        if report["unrebuilt"]:
            kinds = ", ".join(f"{k} ×{n}" for k, n in sorted(report["unrebuilt"].items()))
            click.echo(f"not rebuildable from analytics: {kinds}")
        if report["error"]:
            click.echo(f"stopped: {report['error']} (run the same command again to resume)")
    sys.exit(0 if report["state"] != "open" else 1)


@contextlib.contextmanager
def _counted_progress(label: str, *, enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr, by items done of a total (shown only on a terminal);
    yields ``update(done, total, *rest)``, or None."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int, *rest: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextlib.contextmanager
def _backfill_progress(*, enabled: bool) -> Iterator[Any]:
    """A rich progress bar on stderr (by time covered), or nothing."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("backfill"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[conversations]} conversations"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("backfill", total=1.0, conversations=0)

        def update(progress: Any) -> None:
            bar.update(task, completed=progress.fraction, conversations=progress.conversations)

        yield update


def _notifications_line(shown: dict[str, Any]) -> str:
    line = (
        f"notifications: coverage {', '.join(shown['coverage']) or 'none'};"
        f" {shown['base_topics']} base topic(s) on {shown['channels']} of"
        f" {shown['max_channels']} channel(s) × {shown['topics_per_channel']:,} topics"
    )
    if shown["flows_resolved_at_start"]:
        line += " (+ flows looked up at start)"
    if shown["concurrent_conversations"] is not None:
        line += (
            f"; a conversation costs {shown['conversation_cost']} topic(s):"
            f" room for {shown['concurrent_conversations']:,} at once"
        )
        if not shown["released_on_end"]:
            line += " (held until conversation_ttl: customer.end is not subscribed)"
    return line


def _privacy_line(shown: dict[str, Any]) -> str:
    if not shown["enabled"]:
        return "privacy: OFF (caller numbers and card numbers are stored as received)"
    cards = ", card numbers masked" if shown["scan_cards"] else ""
    return (
        f"privacy: on ({shown['rules']} rule(s) of yours before {shown['default_rules']} "
        f"defaults{cards}; key {shown['key_file']})"
    )


# -- journal ---------------------------------------------------------------------------------------


@main.group()
def journal() -> None:
    """Inspect a journal: stats, export, quarantine, dead letters (dlq)."""


JOURNAL_OPTION = click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False),
    help="Journal file (default: the config's journal.path, else ivrstream.db).",
)


def journal_path_for(config_path: Path | None, journal_path: str | None) -> str:
    path = journal_path or load_config(config_path).journal.path
    if not Path(path).exists():
        click.echo(f"ivrstream: no journal at {path} (--journal)", err=True)
        sys.exit(2)
    return path


@journal.command("stats")
@CONFIG_OPTION
@JOURNAL_OPTION
@click.option("--json", "as_json", is_flag=True)
def journal_stats(config_path: Path | None, journal_path: str | None, as_json: bool) -> None:
    """Counts by source and type, quarantine, gaps, and where each stream stands."""
    from rich.console import Console

    from ivrstream.commands import journal as journal_commands

    data = journal_commands.stats(journal_path_for(config_path, journal_path))
    if as_json:
        echo_json(data)
    else:
        journal_commands.render_stats(data, Console())


@journal.command("export")
@CONFIG_OPTION
@JOURNAL_OPTION
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this position.")
def journal_export(
    config_path: Path | None, journal_path: str | None, fmt: str, after: int
) -> None:
    """Every event, in journal order, one canonical JSON object per line on stdout."""
    from ivrstream.commands import journal as journal_commands

    with _counted_progress("exporting", enabled=True) as on_progress:
        count = journal_commands.export(
            journal_path_for(config_path, journal_path),
            journal_commands.stdout_bytes(),
            after,
            on_progress=on_progress,
        )
    click.echo(f"exported {count} events", err=True)


@journal.command("quarantine")
@CONFIG_OPTION
@JOURNAL_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--raw", "with_raw", is_flag=True, help="Include each frame's bytes (base64).")
@click.option("--json", "as_json", is_flag=True)
def journal_quarantine(
    config_path: Path | None, journal_path: str | None, limit: int, with_raw: bool, as_json: bool
) -> None:
    """Frames that failed a check, newest first, with the reason."""
    from rich.console import Console

    from ivrstream.commands import journal as journal_commands

    entries = journal_commands.quarantine(
        journal_path_for(config_path, journal_path), limit, with_raw or as_json
    )
    if as_json:
        echo_json(entries)
    else:
        journal_commands.render_quarantine(entries, Console())


@journal.group("dlq")
def journal_dlq() -> None:
    """Dead letters: events a sink refused or gave up on (list, retry, purge)."""


SINK_OPTION = click.option("--sink", help="Only this sink (webhook, postgres, nats, jsonl).")


@journal_dlq.command("list")
@CONFIG_OPTION
@JOURNAL_OPTION
@SINK_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def journal_dlq_list(
    config_path: Path | None,
    journal_path: str | None,
    sink: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Each dead letter: sink, journal position, event id, tries, when, and the last error."""
    from rich.console import Console

    from ivrstream.commands import journal as journal_commands

    entries = journal_commands.dead_letters(
        journal_path_for(config_path, journal_path), sink, limit
    )
    if as_json:
        echo_json(entries)
    else:
        journal_commands.render_dead_letters(entries, Console())


@journal_dlq.command("retry")
@CONFIG_OPTION
@JOURNAL_OPTION
@SINK_OPTION
def journal_dlq_retry(config_path: Path | None, journal_path: str | None, sink: str | None) -> None:
    """Queue dead letters for delivery again (the running service picks them up)."""
    from ivrstream.commands import journal as journal_commands

    count = journal_commands.retry_dead_letters(journal_path_for(config_path, journal_path), sink)
    click.echo(f"queued {count} dead letters for another delivery")


@journal_dlq.command("purge")
@CONFIG_OPTION
@JOURNAL_OPTION
@SINK_OPTION
@click.confirmation_option(prompt="Forget these dead letters for good?")
def journal_dlq_purge(config_path: Path | None, journal_path: str | None, sink: str | None) -> None:
    """Forget dead letters (the events stay in the journal)."""
    from ivrstream.commands import journal as journal_commands

    count = journal_commands.purge_dead_letters(journal_path_for(config_path, journal_path), sink)
    click.echo(f"purged {count} dead letters")


# -- receiver --------------------------------------------------------------------------------------


def _webhook_secret(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    from ivrstream import logs
    from ivrstream.webhooks import parse_secret

    if value is None:
        return None
    logs.register_secret(value.strip())
    logs.register_secret(value.strip().removeprefix("whsec_"))
    try:
        return parse_secret(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None  # the message never repeats the secret


def _outages(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> object:
    windows: list[tuple[float, float]] = []
    for value in values:
        start_text, sep, end_text = value.partition(":")
        try:
            start, end = float(start_text), float(end_text)
        except ValueError:
            start = end = -1.0
        if not sep or not 0 <= start < end:
            raise click.BadParameter(f"{value!r} is not START:END seconds with 0 <= START < END")
        windows.append((start, end))
    return windows


def _webhook_path(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.startswith("/"):
        raise click.BadParameter("must start with '/'")
    return value


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--port",
    default=0,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to bind; 0 picks a free one.",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound port to this file once listening.",
)
@click.option(
    "--secret",
    required=True,
    envvar="WEBHOOK_SECRET",
    callback=_webhook_secret,
    help="Standard Webhooks secret, whsec_<base64> (or env WEBHOOK_SECRET).",
)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Store in this SQLite file (created if absent).",
)
@click.option(
    "--dsn",
    envvar="IVRSTREAM_RECEIVER_DSN",
    help="Store in PostgreSQL instead (or env IVRSTREAM_RECEIVER_DSN).",
)
@click.option(
    "--path",
    "webhook_path",
    default="/webhook",
    show_default=True,
    callback=_webhook_path,
    help="Where deliveries are POSTed.",
)
@click.option(
    "--tolerance",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Accepted webhook-timestamp skew, seconds.",
)
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of deliveries answered with --outage-status, without storing.",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait before every answer.",
)
@click.option(
    "--outage",
    "outages",
    multiple=True,
    callback=_outages,
    help="START:END seconds after start during which every delivery fails (repeatable).",
)
@click.option(
    "--outage-status",
    default=503,
    show_default=True,
    type=click.IntRange(400, 599),
    help="Status of injected failures (503, or 429 with --retry-after).",
)
@click.option(
    "--retry-after",
    type=click.IntRange(min=0),
    help="Send Retry-After: N seconds with injected failures.",
)
@click.option("--seed", default=1, show_default=True, type=int, help="Same seed, same failures.")
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
def receiver(
    host: str,
    port: int,
    port_file: Path | None,
    secret: object,
    db: Path | None,
    dsn: str | None,
    webhook_path: str,
    tolerance: float,
    fail_rate: float,
    latency: float,
    outages: object,
    outage_status: int,
    retry_after: int | None,
    seed: int,
    duration: float | None,
) -> None:
    """Receive signed webhook deliveries: verify, deduplicate, store; inject failures on request."""
    from urllib.parse import urlsplit

    from ivrstream import logs
    from ivrstream.commands.receiver import serve
    from ivrstream.receiver import Faults, Receiver

    if (db is None) == (dsn is None):
        raise click.UsageError("give exactly one of --db PATH or --dsn DSN")
    if dsn is not None:
        logs.register_secret(urlsplit(dsn).password)
    assert isinstance(secret, bytes)
    assert isinstance(outages, list)
    try:
        server = Receiver(
            secret,
            db=db,
            dsn=dsn,
            host=host,
            port=port,
            path=webhook_path,
            tolerance=tolerance,
            faults=Faults(
                fail_rate=fail_rate,
                latency=latency,
                status=outage_status,
                retry_after=retry_after,
            ),
            outages=outages,
            seed=seed,
        )
        asyncio.run(serve(server, port_file=port_file, duration=duration))
    except Exception as exc:
        click.echo(f"ivrstream: receiver failed: {logs.REDACTOR.scrub(str(exc))}", err=True)
        sys.exit(1)


# -- audit -----------------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The audit trail: make a checkpoint signing key, verify files and checkpoints."""


@audit.command("keygen")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for audit-signing.pem (0600) and audit-signing.pub.pem.",
)
def audit_keygen(out_dir: Path) -> None:
    """Write a new Ed25519 key pair for signing audit checkpoints (never overwrites)."""
    from ivrstream.audit import write_keypair

    try:
        private, public = write_keypair(out_dir)
    except (FileExistsError, NotADirectoryError) as exc:
        click.echo(f"ivrstream: {exc}", err=True)
        sys.exit(2)
    click.echo(f"private key (give to the service, keep secret): {private}")
    click.echo(f"public key (give to whoever verifies): {public}")


@audit.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check checkpoint signatures with this PEM key (unsigned checkpoints then fail).",
)
@click.option(
    "--against-journal",
    "journal_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also check every journaled event has exactly one matching audit record.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def audit_verify(
    paths: tuple[Path, ...], public_key: Path | None, journal_path: Path | None, as_json: bool
) -> None:
    """Walk every audit file and checkpoint; exit 0 only when everything is intact."""
    from rich.console import Console

    from ivrstream.commands import audit as audit_commands

    try:
        with _counted_progress("verifying", enabled=not as_json) as on_file:
            result = audit_commands.verify_paths(paths, public_key, journal_path, on_file=on_file)
    except audit_commands.UsageProblem as exc:
        click.echo(f"ivrstream: {exc}", err=True)
        sys.exit(2)
    if as_json:
        echo_json(result)
    else:
        audit_commands.render(result, Console())
    sys.exit(0 if result["ok"] else 1)


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True)
def config_show(config_path: Path | None, as_json: bool) -> None:
    """The configuration in effect (file + environment + defaults), secrets redacted."""
    from ivrstream import config as configuration

    data = configuration.redacted(load_config(config_path))
    if as_json:
        echo_json(data)
        return
    for section, values in data.items():
        if not isinstance(values, dict):
            click.echo(f"{section} = {json.dumps(values)}")
    for section, values in data.items():
        if isinstance(values, dict):
            _show_section(section, values)


def _show_section(name: str, values: dict[str, Any]) -> None:
    flat = {k: v for k, v in values.items() if not isinstance(v, dict)}
    click.echo(f"\n[{name}]")
    for key, value in flat.items():
        if value is not None:
            bare = key.replace("_", "").replace("-", "").isalnum()
            click.echo(f"{key if bare else json.dumps(key)} = {json.dumps(value)}")
    for key, value in values.items():
        if isinstance(value, dict):
            _show_section(f"{name}.{key}", value)
