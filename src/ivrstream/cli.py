"""The ``ivrstream`` command line: a thin layer over the library.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error (the message names the
option or field).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ivrstream.emulator.config import ClientSpec, EmulatorConfig
from ivrstream.emulator.faults import FaultSpecError, parse_spec


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
    type=click.FloatRange(min=0),
    help="Seconds to run.",
)
@click.option("--rate", default=3.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", default=1, show_default=True, type=int)
def demo(duration: float, rate: float, seed: int) -> None:
    """See it work: a local Genesys Cloud generating IVR traffic, shown live."""
    from ivrstream.emulator.runner import serve

    asyncio.run(serve(EmulatorConfig(seed=seed, rate=rate), show=True, duration=duration))
