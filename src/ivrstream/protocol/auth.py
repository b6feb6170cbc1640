"""OAuth tokens: when to refresh, and the token request as a conversation.

Rules this module keeps:

- A token is refreshed ahead of expiry: at 90 % of its lifetime, or a minute before it expires
  if that is sooner (but never before half of it has passed).
- 401 → :class:`InvalidClient` naming the client id and the likely causes; 403 →
  :class:`MissingScope`; 400 ``invalid_grant`` → :class:`InvalidGrant`. None of these is retried.
- 429 → wait ``Retry-After`` (3 s if absent, as Genesys' SDKs do), stretched by a little jitter;
  a ``Retry-After`` above ``max_retry_after`` (180 s by default, again as the SDKs do) is given up
  on at once with :class:`RateLimited`.
- 5xx and network errors → exponential backoff with full jitter, up to ``max_attempts``.
- Nothing here ever includes the secret, the assertion or the token in a message.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from ivrstream.errors import (
    AuthError,
    InvalidClient,
    InvalidGrant,
    MissingScope,
    RateLimited,
    ServiceUnavailable,
)
from ivrstream.models import OAuthError, TokenResponse
from ivrstream.protocol.backoff import ceiling, jittered
from ivrstream.protocol.conversation import (
    Conversation,
    NetworkError,
    Request,
    Response,
    Sleep,
    retry_after_seconds,
)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class Token:
    """An access token and when it was issued (clock seconds). ``repr`` never shows it."""

    access_token: str = field(repr=False)
    issued_at: float
    expires_in: float
    scopes: frozenset[str]

    @property
    def expires_at(self) -> float:
        return self.issued_at + self.expires_in

    @property
    def refresh_at(self) -> float:
        """When to replace it: 90 % of the lifetime, or 60 s before expiry if sooner."""
        lifetime = self.expires_in
        lead = max(min(lifetime * 0.1, lifetime * 0.5), min(60.0, lifetime * 0.5))
        return self.expires_at - lead

    def fresh(self, now: float) -> bool:
        return now < self.refresh_at


@dataclass(frozen=True)
class AuthPolicy:
    max_attempts: int = 8  # for 429/5xx/network together
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    default_retry_after: float = 3.0
    max_retry_after: float = 180.0


class Grant:
    """How to ask for a token: headers and form fields, built fresh for each attempt."""

    client_id: str

    def headers(self) -> dict[str, str]:
        return {}

    def form(self, now: float, rng: random.Random) -> dict[str, str]:
        raise NotImplementedError


@dataclass(frozen=True)
class ClientCredentials(Grant):
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None

    def headers(self) -> dict[str, str]:
        pair = f"{self.client_id}:{self.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def form(self, now: float, rng: random.Random) -> dict[str, str]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        return form


@dataclass(frozen=True)
class JwtBearer(Grant):
    """RFC 7523: an assertion signed with the client's private key. ``sign(claims)`` returns the
    compact JWT; it lives in the shell (key handling is not this module's business)."""

    client_id: str
    audience: str
    sign: Callable[[dict[str, object]], str] = field(repr=False)
    lifetime: int = 300

    def form(self, now: float, rng: random.Random) -> dict[str, str]:
        claims: dict[str, object] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.audience,
            "iat": int(now),
            "exp": int(now) + self.lifetime,
            "jti": f"{rng.getrandbits(128):032x}",
        }
        return {"grant_type": JWT_BEARER, "assertion": self.sign(claims)}


def _error_text(response: Response) -> str:
    try:
        body = msgspec.json.decode(response.body, type=OAuthError)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ""
    return body.error_description or body.description or body.error


def _sleep(seconds: float) -> Conversation[float]:
    """Yield a sleep; the driver answers with the clock time after it."""
    now = yield Sleep(seconds)
    assert isinstance(now, float)
    return now


def request_token(
    grant: Grant, token_url: str, now: float, rng: random.Random, policy: AuthPolicy | None = None
) -> Conversation[Token]:
    """The whole token request, retries included. Drive it; it returns a :class:`Token`."""
    policy = policy or AuthPolicy()
    attempt = 0
    while True:
        attempt += 1
        request = Request(
            "POST",
            token_url,
            headers={**grant.headers(), "Accept": "application/json"},
            form=grant.form(now, rng),
        )
        try:
            answer = yield request
        except NetworkError as exc:
            problem = f"cannot reach {token_url}: {exc}"
            if attempt >= policy.max_attempts:
                raise ServiceUnavailable(problem) from None
            now = yield from _sleep(
                rng.uniform(0, ceiling(policy.backoff_base, policy.backoff_cap, attempt - 1))
            )
            continue
        assert isinstance(answer, Response)
        response = answer
        if response.status == 200:
            try:
                body = msgspec.json.decode(response.body, type=TokenResponse)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ServiceUnavailable(
                    f"token response from {token_url} is malformed: {exc}"
                ) from None
            scopes = frozenset((body.scope or "").split())
            return Token(body.access_token, now, float(body.expires_in), scopes)
        detail = _error_text(response)
        if response.status == 401:
            raise InvalidClient(
                f"OAuth client {grant.client_id!r} was refused by {token_url} (401"
                f"{': ' + detail if detail else ''}). Check the client id and secret, and that the"
                " region (GENESYS_ENV / GENESYS_TENANT_URL) is the one the client was created in."
            )
        if response.status == 403:
            raise MissingScope(
                f"OAuth client {grant.client_id!r} may not use this grant (403"
                f"{': ' + detail if detail else ''}); check its roles and scopes"
            )
        if response.status == 400:
            error = detail or "bad request"
            if isinstance(grant, JwtBearer):
                raise InvalidGrant(
                    f"JWT assertion for {grant.client_id!r} refused: {error}. Check the key pair,"
                    " the issuer (client id), the audience and this machine's clock."
                )
            raise AuthError(f"token request for {grant.client_id!r} refused: {error}")
        if response.status == 429:
            wait = retry_after_seconds(response)
            wait = policy.default_retry_after if wait is None else wait
            if wait > policy.max_retry_after or attempt >= policy.max_attempts:
                raise RateLimited(
                    f"token endpoint rate-limited us (Retry-After {wait:g}s)", retry_after=wait
                )
            now = yield from _sleep(jittered(wait, rng))
            continue
        if response.status >= 500:
            if attempt >= policy.max_attempts:
                raise ServiceUnavailable(
                    f"token endpoint answered {response.status} {attempt} times"
                )
            now = yield from _sleep(
                rng.uniform(0, ceiling(policy.backoff_base, policy.backoff_cap, attempt - 1))
            )
            continue
        raise AuthError(f"token endpoint answered {response.status} {detail}".strip())
