"""Request/response conversations without a network (the httpx idea).

A conversation is a generator that yields :class:`Request` (answered with a :class:`Response`)
or :class:`Sleep` (answered with the clock time after sleeping) and finally returns its result.
``ivrstream.aio.http.drive`` runs one over aiohttp; tests drive them with canned responses.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    form: dict[str, str] | None = None  # sent url-encoded when set


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


@dataclass(frozen=True)
class Sleep:
    seconds: float


class NetworkError(Exception):
    """Sent into a conversation (``generator.throw``) when a request could not be made."""


Step = Request | Sleep
Conversation = Generator[Step, "Response | float", T]


@dataclass(frozen=True)
class Finished(Generic[T]):
    """What a conversation returned."""

    value: T


def resume(
    conversation: Conversation[T], answer: Response | float | NetworkError | None
) -> Step | Finished[T]:
    """The next step of ``conversation`` given the answer to its last one — ``None`` to start
    it, a :class:`NetworkError` to throw into it — or what it returned. Every driver (the
    aiohttp one, test ones) turns the crank with this."""
    try:
        if isinstance(answer, NetworkError):
            return conversation.throw(answer)
        if answer is None:
            return next(conversation)
        return conversation.send(answer)
    except StopIteration as stop:
        return Finished(stop.value)


def retry_after_seconds(response: Response) -> float | None:
    """The ``Retry-After`` header in seconds (integer form only, as Genesys sends it)."""
    value = response.header("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
