"""``POST /oauth/token`` and bearer-token checks for every other surface.

Grants: ``client_credentials`` (HTTP Basic client id and secret) and the JWT bearer grant of
RFC 7523 (``urn:ietf:params:oauth:grant-type:jwt-bearer``; ``assertion`` signed with RS256, ES256
or EdDSA by a key whose public half the client spec holds; ``iss`` = client id; ``aud`` = the
token URL or the base URL; ``exp`` required and judged on the emulator's clock).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
from aiohttp import web

from ivrstream.clock import Clock
from ivrstream.emulator.config import ClientSpec, EmulatorConfig
from ivrstream.emulator.faults import FaultState
from ivrstream.emulator.ledger import Ledger
from ivrstream.models import ApiError, OAuthError, TokenResponse

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_ALGORITHMS = ["RS256", "ES256", "EdDSA"]


@dataclass
class IssuedToken:
    token: str
    client: ClientSpec
    scopes: frozenset[str]
    expires_at: float  # clock time
    revoked: bool = False


def oauth_error(status: int, error: str, description: str, **headers: str) -> web.Response:
    body = OAuthError(error=error, description=description, error_description=description)
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers=headers,
    )


def api_error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = ApiError(status=status, code=code, message=message)
    return web.Response(
        status=status,
        body=msgspec.json.encode(body),
        content_type="application/json",
        headers=headers,
    )


class TokenIssuer:
    """Issues tokens and answers "is this bearer token good, and for what?"."""

    def __init__(
        self, config: EmulatorConfig, clock: Clock, faults: FaultState, ledger: Ledger
    ) -> None:
        self.config = config
        self.clock = clock
        self.faults = faults
        self.ledger = ledger
        self._tokens: dict[str, IssuedToken] = {}
        self.issued = 0
        self.on_revoke: list[Any] = []  # callables run after revoke_all()

    # -- the endpoint ------------------------------------------------------------------------

    async def handle_token(self, request: web.Request) -> web.Response:
        if self.faults.take("token_rate_limited"):
            return oauth_error(
                429,
                "rate_limited",
                "Rate limit exceeded",
                **{"Retry-After": str(self.faults.settings.retry_after)},
            )
        if self.faults.take("token_errors"):
            return oauth_error(503, "temporarily_unavailable", "The service is unavailable")
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        if grant == "client_credentials":
            client = self._basic_client(request)
            if client is None:
                self.ledger.record("auth_failure", grant=grant)
                return oauth_error(401, "invalid_client", "authentication failed")
        elif grant == JWT_BEARER:
            client, problem = self._jwt_client(request, str(form.get("assertion", "")))
            if client is None:
                self.ledger.record("auth_failure", grant=grant, reason=problem)
                return oauth_error(400, "invalid_grant", problem)
        else:
            return oauth_error(400, "unsupported_grant_type", f"grant_type {grant!r} unsupported")
        requested = str(form.get("scope", "")).split()
        scopes = (
            frozenset(client.scopes)
            if not requested
            else frozenset(s for s in requested if s in client.scopes)
        )
        issued = self.issue(client, scopes)
        response = TokenResponse(
            access_token=issued.token,
            expires_in=self.config.token_ttl,
            scope=" ".join(sorted(scopes)),
        )
        return web.Response(body=msgspec.json.encode(response), content_type="application/json")

    def issue(self, client: ClientSpec, scopes: frozenset[str]) -> IssuedToken:
        now = self.clock.time()
        # forget long-dead tokens so a long run does not accumulate them
        if len(self._tokens) > 10_000:
            self._tokens = {k: v for k, v in self._tokens.items() if v.expires_at > now}
        token = IssuedToken(secrets.token_urlsafe(32), client, scopes, now + self.config.token_ttl)
        self._tokens[token.token] = token
        self.issued += 1
        self.ledger.record("token_issued", client=client.client_id, ttl=self.config.token_ttl)
        return token

    def _basic_client(self, request: web.Request) -> ClientSpec | None:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client = self.config.client(client_id)
        if client is None or not secrets.compare_digest(client.secret, secret):
            return None
        return client

    def _jwt_client(self, request: web.Request, assertion: str) -> tuple[ClientSpec | None, str]:
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            return None, f"assertion is not a JWT: {exc}"
        client = self.config.client(str(claims.get("iss", "")))
        if client is None or client.jwt_public_key is None:
            return None, "unknown issuer or no key registered for it"
        base = f"{request.scheme}://{request.host}"
        try:
            verified = jwt.decode(
                assertion,
                key=client.jwt_public_key,
                algorithms=JWT_ALGORITHMS,
                audience=[f"{base}/oauth/token", base],
                issuer=client.client_id,
                options={"require": ["exp", "iss", "aud"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            return None, f"assertion rejected: {exc}"
        if float(verified["exp"]) <= self.clock.time():
            return None, "assertion expired"
        return client, ""

    # -- checks for other surfaces ---------------------------------------------------------------

    def lookup(self, token: str) -> tuple[IssuedToken | None, str]:
        """The token's record, or ``None`` and why not ("missing", "invalid", "expired")."""
        if not token:
            return None, "missing"
        issued = self._tokens.get(token)
        if issued is None or issued.revoked:
            return None, "invalid"
        if issued.expires_at <= self.clock.time():
            return None, "expired"
        return issued, ""

    def from_request(
        self, request: web.Request, *, allow_query: bool = False
    ) -> tuple[IssuedToken | None, str]:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if not token and allow_query:
            token = request.query.get("access_token", "")
        return self.lookup(token)

    def require(self, request: web.Request) -> IssuedToken:
        """The request's valid token, or raise 401 as Genesys REST does."""
        issued, problem = self.from_request(request)
        if issued is None:
            raise web.HTTPUnauthorized(
                text=msgspec.json.encode(
                    ApiError(
                        status=401,
                        code="bad.credentials",
                        message=f"Invalid login credentials ({problem} token).",
                    )
                ).decode(),
                content_type="application/json",
            )
        return issued

    def revoke_all(self) -> int:
        count = 0
        for issued in self._tokens.values():
            if not issued.revoked:
                issued.revoked = True
                count += 1
        for callback in self.on_revoke:
            callback()
        return count
