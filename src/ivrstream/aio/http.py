"""Run a :mod:`ivrstream.protocol.conversation` over aiohttp, on a given clock."""

from __future__ import annotations

import logging
import urllib.parse
from typing import TypeVar

import aiohttp

from ivrstream.clock import Clock
from ivrstream.protocol.conversation import (
    Conversation,
    Finished,
    NetworkError,
    Request,
    Response,
    Sleep,
    resume,
)

T = TypeVar("T")
log = logging.getLogger("ivrstream.http")
DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


async def send(session: aiohttp.ClientSession, request: Request) -> Response:
    """Make one request; network failures become :class:`NetworkError`."""
    try:
        async with session.request(
            request.method,
            request.url,
            headers=request.headers,
            data=request.form if request.form is not None else (request.body or None),
            timeout=DEFAULT_TIMEOUT,
        ) as resp:
            body = await resp.read()
            return Response(resp.status, dict(resp.headers), body)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise NetworkError(f"{type(exc).__name__}: {exc}") from None


def _where(url: str) -> str:
    """Scheme, host and path of ``url``: never its query (it could carry a secret)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def drive(
    conversation: Conversation[T],
    session: aiohttp.ClientSession,
    clock: Clock,
    *,
    label: str | None = None,
) -> T:
    """Answer each step of ``conversation`` until it returns. With a ``label``, every request
    that fails in a way the conversation retries (no connection, 429, 5xx) is logged as a
    warning, so an unreachable endpoint is never silent."""
    answer: Response | float | NetworkError | None = None
    while True:
        step = resume(conversation, answer)
        if isinstance(step, Finished):
            return step.value
        if isinstance(step, Sleep):
            await clock.sleep(step.seconds)
            answer = clock.time()
            continue
        try:
            answer = await send(session, step)
        except NetworkError as exc:
            answer = exc
            if label is not None:
                log.warning("%s: cannot reach %s (%s); retrying", label, _where(step.url), exc)
        else:
            if label is not None and (answer.status == 429 or answer.status >= 500):
                log.warning("%s: %s answered %d; retrying", label, _where(step.url), answer.status)
