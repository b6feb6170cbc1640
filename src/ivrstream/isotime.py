"""ISO-8601 timestamps as Genesys writes them (``2026-05-01T10:00:56.400Z``) ⇄ epoch ms."""

from __future__ import annotations

from datetime import UTC, datetime


class TimeFormatError(ValueError):
    """A timestamp or interval that is not ISO-8601."""


def format_ms(epoch_ms: int) -> str:
    """``1777629656400`` → ``"2026-05-01T10:00:56.400Z"``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_ms(text: str) -> int:
    """An ISO-8601 timestamp (``Z`` or an offset; naive means UTC) → epoch milliseconds."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise TimeFormatError(f"not an ISO-8601 timestamp: {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def parse_interval(text: str) -> tuple[int, int]:
    """``"start/end"`` → (start_ms, end_ms); the end must come after the start."""
    start_text, sep, end_text = text.partition("/")
    if not sep:
        raise TimeFormatError(f"an interval is 'start/end': {text!r}")
    start, end = parse_ms(start_text), parse_ms(end_text)
    if end <= start:
        raise TimeFormatError(f"interval ends before it starts: {text!r}")
    return start, end


def format_interval(start_ms: int, end_ms: int) -> str:
    return f"{format_ms(start_ms)}/{format_ms(end_ms)}"


DAY_MS = 86_400_000


def utc_day(epoch_ms: int) -> int:
    """The UTC day number (days since the epoch) that ``epoch_ms`` falls on."""
    return epoch_ms // DAY_MS
