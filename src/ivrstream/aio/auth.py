"""The token lifecycle in asyncio: one cached token, refreshed ahead of expiry, one refresh at
a time, secrets registered with the log redactor."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from ivrstream.aio.http import drive
from ivrstream.clock import Clock
from ivrstream.errors import AuthError, ConfigError, IvrstreamError
from ivrstream.logs import register_secret
from ivrstream.protocol.auth import AuthPolicy, Grant, Token, request_token

log = logging.getLogger("ivrstream.auth")


def jwt_signer(private_key_file: str | Path, algorithm: str) -> Callable[[dict[str, object]], str]:
    """A function that signs RFC 7523 assertions with the PEM key in ``private_key_file``."""
    try:
        key = Path(private_key_file).read_bytes()
    except OSError as exc:
        raise ConfigError("genesys.jwt_private_key_file", f"cannot read it: {exc}") from None

    def sign(claims: dict[str, object]) -> str:
        assertion = jwt.encode(claims, key, algorithm=algorithm)
        register_secret(assertion)
        return assertion

    try:
        sign({"probe": True})
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ConfigError(
            "genesys.jwt_private_key_file", f"not a usable {algorithm} private key: {exc}"
        ) from None
    return sign


class TokenManager:
    """``await tokens.get()`` returns a token that is good for a while; ``refresh()`` forces one."""

    def __init__(
        self,
        grant: Grant,
        token_url: str,
        session: aiohttp.ClientSession,
        clock: Clock,
        rng: random.Random,
        policy: AuthPolicy | None = None,
        on_failure: Callable[[BaseException], Any] | None = None,
    ) -> None:
        self.grant = grant
        self.token_url = token_url
        self.session = session
        self.clock = clock
        self.rng = rng
        self.policy = policy or AuthPolicy()
        self.on_failure = on_failure
        self._token: Token | None = None
        self._inflight: asyncio.Task[Token] | None = None
        self.refreshes = 0
        self.failures = 0
        self.last_error: str | None = None

    @property
    def token(self) -> Token | None:
        return self._token

    async def get(self) -> Token:
        """A token fresh enough to use (refreshing first if it is due)."""
        token = self._token
        if token is not None and token.fresh(self.clock.time()):
            return token
        return await self.refresh()

    async def refresh(self) -> Token:
        """Get a new token; concurrent callers share one request."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._fetch())
        return await asyncio.shield(self._inflight)

    async def close(self) -> None:
        """Abandon a refresh in flight (the session is about to close)."""
        task = self._inflight
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def invalidate(self) -> None:
        """Forget the token (the server said it is no good)."""
        self._token = None

    async def _fetch(self) -> Token:
        try:
            token = await drive(
                request_token(self.grant, self.token_url, self.clock.time(), self.rng, self.policy),
                self.session,
                self.clock,
                label=f"token for {self.grant.client_id}",
            )
        except IvrstreamError as exc:
            self.failures += 1
            self.last_error = str(exc)
            if not isinstance(exc, AuthError):
                log.warning("no token yet, will keep trying: %s", exc)
            if self.on_failure is not None and isinstance(exc, AuthError):
                self.on_failure(exc)
            raise
        register_secret(token.access_token)
        self._token = token
        self.refreshes += 1
        log.info(
            "token for %s obtained: expires in %ds, refresh due in %ds",
            self.grant.client_id,
            token.expires_in,
            token.refresh_at - token.issued_at,
        )
        return token

    async def keep_fresh(self) -> None:
        """Refresh ahead of expiry forever (run as a task). Failures are retried by ``get``."""
        while True:
            token = self._token
            if token is None:
                with contextlib.suppress(IvrstreamError):
                    await self.get()
                await self.clock.sleep(1.0 if self._token is None else 0.0)
                continue
            await self.clock.sleep(max(0.0, token.refresh_at - self.clock.time()))
            if self._token is token:
                try:
                    await self.refresh()
                except IvrstreamError as exc:
                    log.warning("token refresh failed, will retry: %s", exc)
                    await self.clock.sleep(min(30.0, max(1.0, token.expires_in * 0.05)))

    def statistics(self) -> dict[str, Any]:
        token = self._token
        return {
            "refreshes": self.refreshes,
            "failures": self.failures,
            "expires_at": token.expires_at if token else None,
            "refresh_at": token.refresh_at if token else None,
            "last_error": self.last_error,
        }
