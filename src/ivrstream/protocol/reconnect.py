"""When and how to reconnect an Event Streams socket: one function decides.

Rules (``shared/reference/event-streams.md``, "Closing"):

- 4001 (token invalid or expired) and an HTTP 401 on the upgrade: get a fresh token and
  reconnect; the first such retry has no backoff penalty, repeated ones back off.
- 4003 (subscription forbidden) and an HTTP 403 on the upgrade: stop with a clear error —
  retrying the same payload cannot help.
- 4029 (connection quota), 1001/1006/1011/1013, other codes and network errors: reconnect after
  an exponential, fully jittered delay.
- A subscription that was acknowledged and delivered resets the attempt count.
- ``max_attempts`` (None: keep trying at the cap, reporting unhealthy) bounds consecutive
  failures; past it the decision is to give up.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from ivrstream.protocol.backoff import ceiling
from ivrstream.protocol.eventstreams import (
    CLOSE_QUOTA_EXCEEDED,
    CLOSE_SUBSCRIPTION_FORBIDDEN,
    CLOSE_TOKEN_INVALID,
)


class Why(StrEnum):
    """Why a socket ended (used in hooks, logs and metrics labels)."""

    TOKEN = "token"  # noqa: S105 - 4001 or upgrade 401, not a secret
    FORBIDDEN = "forbidden"  # 4003 or upgrade 403
    QUOTA = "quota"  # 4029
    IDLE = "idle"  # our watchdog: nothing arrived in time
    RESEND = "resend"  # we asked for a gap to be re-sent
    SERVER = "server"  # a close frame with another code
    NETWORK = "network"  # connect failed, abnormal close (1006), reset


def why_closed(code: int | None) -> Why:
    """Classify a close code from the server (None: no close frame at all)."""
    if code == CLOSE_TOKEN_INVALID:
        return Why.TOKEN
    if code == CLOSE_SUBSCRIPTION_FORBIDDEN:
        return Why.FORBIDDEN
    if code == CLOSE_QUOTA_EXCEEDED:
        return Why.QUOTA
    if code is None or code == 1006:
        return Why.NETWORK
    return Why.SERVER


@dataclass(frozen=True)
class Decision:
    """What to do after a socket ended: wait ``delay`` seconds, maybe refresh the token first,
    then reconnect — or stop (``stop`` says why)."""

    delay: float
    refresh_token: bool
    attempt: int
    stop: str | None = None


class ReconnectPolicy:
    """Counts consecutive failures and turns each ending into a :class:`Decision`."""

    def __init__(
        self,
        *,
        base: float = 1.0,
        cap: float = 30.0,
        max_attempts: int | None = None,
        rng: random.Random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.max_attempts = max_attempts
        self.rng = rng
        self.attempts = 0  # consecutive endings without a delivering subscription in between
        self._token_retry_free = True
        self.total = 0

    def streaming(self) -> None:
        """The subscription was acknowledged and delivered: the next failure starts over."""
        self.attempts = 0
        self._token_retry_free = True

    def after(self, why: Why, detail: str = "") -> Decision:
        """Decide what follows a socket that ended for ``why``."""
        self.total += 1
        if why is Why.FORBIDDEN:
            return Decision(0.0, False, self.attempts, stop=detail or "subscription forbidden")
        if why in (Why.RESEND, Why.IDLE) and self.attempts == 0:
            self.attempts = 1
            return Decision(0.0, False, 1)  # our own choice: reconnect at once
        self.attempts += 1
        if self.max_attempts is not None and self.attempts > self.max_attempts:
            return Decision(
                0.0,
                why is Why.TOKEN,
                self.attempts,
                stop=f"gave up after {self.max_attempts} reconnect attempts ({why.value})",
            )
        if why is Why.TOKEN and self._token_retry_free:
            self._token_retry_free = False
            return Decision(0.0, True, self.attempts)
        delay = self.rng.uniform(0.0, ceiling(self.base, self.cap, self.attempts - 1))
        return Decision(delay, why is Why.TOKEN, self.attempts)

    @property
    def at_cap(self) -> bool:
        """True once delays have reached the cap: the service should report itself unhealthy."""
        return ceiling(self.base, self.cap, max(0, self.attempts - 1)) >= self.cap
