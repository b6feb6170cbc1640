"""OAuth: the token request driven by hand with canned responses; refresh timing; no leaks."""

from __future__ import annotations

import base64
import random
import re
from typing import Any

import msgspec
import pytest

from ivrstream.errors import (
    AuthError,
    InvalidClient,
    InvalidGrant,
    MissingScope,
    RateLimited,
    ServiceUnavailable,
)
from ivrstream.protocol.auth import (
    JWT_BEARER,
    AuthPolicy,
    ClientCredentials,
    JwtBearer,
    Token,
    request_token,
)
from ivrstream.protocol.conversation import Conversation, NetworkError, Request, Response, Sleep

URL = "https://login.example.test/oauth/token"
CLIENT_ID = "client-7f3a"
SECRET = "s3cr3t-Do-Not-Print"
ACCESS = "tok-abcdef-123456"
CREDENTIALS = ClientCredentials(CLIENT_ID, SECRET)


def ok(expires_in: int = 86_400, scope: str | None = "view:interaction analytics") -> Response:
    body: dict[str, Any] = {
        "access_token": ACCESS,
        "token_type": "bearer",
        "expires_in": expires_in,
    }
    if scope is not None:
        body["scope"] = scope
    return Response(200, {"Content-Type": "application/json"}, msgspec.json.encode(body))


def error(status: int, headers: dict[str, str] | None = None, **body: str) -> Response:
    return Response(status, headers or {}, msgspec.json.encode(body) if body else b"")


class Driver:
    """Drives a conversation: records every step, answers requests and sleeps by hand."""

    def __init__(self, gen: Conversation[Token]) -> None:
        self.gen = gen
        self.steps: list[Request | Sleep] = [next(gen)]
        self.result: Token | None = None

    @property
    def step(self) -> Request | Sleep:
        return self.steps[-1]

    def _go(self, advance: Any) -> None:
        try:
            self.steps.append(advance())
        except StopIteration as stop:
            self.result = stop.value

    def send(self, answer: Response | float) -> None:
        self._go(lambda: self.gen.send(answer))

    def throw(self, exc: BaseException) -> None:
        self._go(lambda: self.gen.throw(exc))

    @property
    def requests(self) -> list[Request]:
        return [s for s in self.steps if isinstance(s, Request)]

    @property
    def sleeps(self) -> list[float]:
        return [s.seconds for s in self.steps if isinstance(s, Sleep)]


def drive(
    grant: Any = CREDENTIALS,
    now: float = 1_000.0,
    rng: random.Random | None = None,
    policy: AuthPolicy | None = None,
) -> Driver:
    return Driver(request_token(grant, URL, now, rng or random.Random(1), policy))


# -- success -------------------------------------------------------------------------------------


def test_a_200_returns_the_token_issued_now_with_its_scopes():
    d = drive(now=1_000.0)
    assert isinstance(d.step, Request)
    d.send(ok(expires_in=3_600))
    assert d.result == Token(ACCESS, 1_000.0, 3_600.0, frozenset({"view:interaction", "analytics"}))
    assert d.result.expires_at == 4_600.0


def test_a_token_without_scope_has_no_scopes():
    d = drive()
    d.send(ok(scope=None))
    assert d.result is not None
    assert d.result.scopes == frozenset()


def test_a_malformed_200_is_a_service_problem_not_a_token():
    d = drive()
    with pytest.raises(ServiceUnavailable, match="malformed"):
        d.send(Response(200, {}, b'{"token_type": "bearer"}'))
    d = drive()
    with pytest.raises(ServiceUnavailable, match="malformed"):
        d.send(Response(200, {}, b"<html>"))


# -- when to refresh -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "refresh_after"),
    [
        (10, 5.0),  # half: 90 % (9 s) or a minute early (never) are both too late or too soon
        (100, 50.0),  # a minute early would be at 40 s: never before half
        (300, 240.0),  # a minute early beats 90 % (270 s)
        (600, 540.0),  # both rules agree
        (86_400, 77_760.0),  # 90 % comes first
    ],
)
def test_refresh_at(lifetime, refresh_after):
    token = Token(ACCESS, 500.0, float(lifetime), frozenset())
    assert token.refresh_at == pytest.approx(500.0 + refresh_after)
    assert token.fresh(500.0 + refresh_after - 0.001)
    assert not token.fresh(500.0 + refresh_after)


# -- what the request carries --------------------------------------------------------------------


def test_client_credentials_send_http_basic_and_the_grant_type():
    d = drive(ClientCredentials(CLIENT_ID, SECRET, scope="view:interaction"))
    request = d.step
    assert isinstance(request, Request)
    assert (request.method, request.url) == ("POST", URL)
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(encoded).decode() == f"{CLIENT_ID}:{SECRET}"
    assert request.headers["Accept"] == "application/json"
    assert request.form == {"grant_type": "client_credentials", "scope": "view:interaction"}


def test_client_credentials_without_scope_send_only_the_grant_type():
    request = drive().step
    assert isinstance(request, Request)
    assert request.form == {"grant_type": "client_credentials"}


class Signer:
    def __init__(self) -> None:
        self.claims: list[dict[str, object]] = []

    def __call__(self, claims: dict[str, object]) -> str:
        self.claims.append(claims)
        return f"signed.jwt.{len(self.claims)}"


def test_a_jwt_bearer_form_carries_an_assertion_signed_from_the_right_claims():
    sign = Signer()
    grant = JwtBearer(CLIENT_ID, "https://login.example.test/", sign, lifetime=120)
    d = drive(grant, now=1_700_000_000.75)
    request = d.step
    assert isinstance(request, Request)
    assert request.form == {"grant_type": JWT_BEARER, "assertion": "signed.jwt.1"}
    assert "Authorization" not in request.headers
    [claims] = sign.claims
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == "https://login.example.test/"
    assert claims["iat"] == 1_700_000_000
    assert claims["exp"] == 1_700_000_120
    assert re.fullmatch(r"[0-9a-f]{32}", str(claims["jti"]))


def test_each_jwt_attempt_is_signed_afresh_with_a_new_jti_and_time():
    sign = Signer()
    d = drive(JwtBearer(CLIENT_ID, "aud", sign), now=100.0)
    d.send(error(503))
    assert isinstance(d.step, Sleep)
    d.send(140.0)
    assert isinstance(d.step, Request)
    assert d.step.form == {"grant_type": JWT_BEARER, "assertion": "signed.jwt.2"}
    first, second = sign.claims
    assert first["jti"] != second["jti"]
    assert (first["iat"], second["iat"]) == (100, 140)


# -- refusals: never retried ---------------------------------------------------------------------


def test_401_is_an_invalid_client_naming_the_client_never_the_secret():
    d = drive()
    with pytest.raises(InvalidClient) as caught:
        d.send(error(401, error="invalid_client", error_description="client not found"))
    message = str(caught.value)
    assert CLIENT_ID in message
    assert "client not found" in message
    assert "GENESYS_ENV" in message  # the likely cause: the wrong region
    assert SECRET not in message
    assert SECRET not in repr(caught.value)
    assert len(d.requests) == 1


def test_401_without_a_body_is_still_explained():
    d = drive()
    with pytest.raises(InvalidClient, match=CLIENT_ID):
        d.send(error(401))


def test_403_is_a_missing_scope():
    d = drive()
    with pytest.raises(MissingScope, match=CLIENT_ID) as caught:
        d.send(error(403, error="access_denied", description="missing view:interaction"))
    assert "missing view:interaction" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_400_invalid_grant_with_a_jwt_is_an_invalid_grant():
    d = drive(JwtBearer(CLIENT_ID, "aud", Signer()))
    with pytest.raises(InvalidGrant) as caught:
        d.send(error(400, error="invalid_grant"))
    assert "invalid_grant" in str(caught.value)
    assert "signed.jwt" not in str(caught.value)  # the assertion never appears


def test_400_for_client_credentials_is_an_auth_error_but_not_an_invalid_grant():
    d = drive()
    with pytest.raises(AuthError) as caught:
        d.send(error(400, error="unsupported_grant_type"))
    assert type(caught.value) is AuthError
    assert "unsupported_grant_type" in str(caught.value)


def test_an_unexpected_status_is_an_auth_error():
    d = drive()
    with pytest.raises(AuthError, match="418"):
        d.send(error(418))


# -- 429 -----------------------------------------------------------------------------------------


def test_429_with_retry_after_sleeps_at_least_that_long_then_retries():
    d = drive(now=1_000.0)
    d.send(error(429, {"Retry-After": "10"}))
    assert isinstance(d.step, Sleep)
    assert 10.0 <= d.step.seconds <= 12.0  # stretched by up to a fifth, never shortened
    d.send(1_011.0)
    assert isinstance(d.step, Request)
    assert d.step.form == {"grant_type": "client_credentials"}
    d.send(ok())
    assert d.result is not None
    assert d.result.issued_at == 1_011.0  # the clock the driver answered with


def test_retry_after_is_read_whatever_its_case():
    d = drive()
    d.send(error(429, {"retry-after": "20"}))
    assert isinstance(d.step, Sleep)
    assert 20.0 <= d.step.seconds <= 24.0


def test_the_retry_after_jitter_is_spread_not_fixed():
    seen = set()
    for seed in range(20):
        d = drive(rng=random.Random(seed))
        d.send(error(429, {"Retry-After": "10"}))
        assert isinstance(d.step, Sleep)
        seen.add(round(d.step.seconds, 6))
    assert len(seen) > 10


@pytest.mark.parametrize("header", [{}, {"Retry-After": "soon"}])
def test_429_without_a_usable_retry_after_waits_three_seconds(header):
    d = drive()
    d.send(error(429, header))
    assert isinstance(d.step, Sleep)
    assert 3.0 <= d.step.seconds <= 3.6


def test_a_retry_after_beyond_the_limit_gives_up_at_once():
    d = drive()
    with pytest.raises(RateLimited) as caught:
        d.send(error(429, {"Retry-After": "181"}))
    assert caught.value.retry_after == 181.0
    assert d.sleeps == []
    assert len(d.requests) == 1


def test_a_retry_after_at_the_limit_is_waited_for():
    d = drive()
    d.send(error(429, {"Retry-After": "180"}))
    assert isinstance(d.step, Sleep)


def test_the_retry_after_limit_is_a_policy_setting():
    d = drive(policy=AuthPolicy(max_retry_after=5.0))
    with pytest.raises(RateLimited):
        d.send(error(429, {"Retry-After": "6"}))


def test_429s_count_against_max_attempts():
    d = drive(policy=AuthPolicy(max_attempts=3))
    for _ in range(2):
        d.send(error(429, {"Retry-After": "1"}))
        d.send(0.0)
    assert len(d.requests) == 3
    with pytest.raises(RateLimited):
        d.send(error(429, {"Retry-After": "1"}))


# -- 5xx and network errors ----------------------------------------------------------------------


class Highest(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_backs_off_and_retries_then_succeeds(status):
    d = drive(now=0.0, rng=Highest())
    now = 0.0
    for _ in range(3):
        d.send(error(status))
        assert isinstance(d.step, Sleep)
        now += d.step.seconds
        d.send(now)
        assert isinstance(d.step, Request)
    assert d.sleeps == [0.5, 1.0, 2.0]  # the ceilings: base 0.5 doubling
    d.send(ok())
    assert d.result is not None
    assert d.result.issued_at == 3.5


def test_5xx_backoff_is_fully_jittered_within_the_ceiling():
    d = drive(rng=random.Random(9), policy=AuthPolicy(max_attempts=20))
    for attempt in range(19):
        d.send(error(500))
        assert isinstance(d.step, Sleep)
        assert 0.0 <= d.step.seconds <= min(30.0, 0.5 * 2**attempt)
        d.send(0.0)


def test_5xx_gives_up_after_max_attempts():
    d = drive(policy=AuthPolicy(max_attempts=4))
    for _ in range(3):
        d.send(error(503))
        d.send(0.0)
    with pytest.raises(ServiceUnavailable, match="503 4 times"):
        d.send(error(503))
    assert len(d.requests) == 4
    assert len(d.sleeps) == 3


def test_network_errors_back_off_and_retry():
    d = drive(now=0.0, rng=Highest())
    d.throw(NetworkError("connection refused"))
    assert isinstance(d.step, Sleep)
    assert d.step.seconds == 0.5
    d.send(0.5)
    assert isinstance(d.step, Request)
    d.send(ok())
    assert d.result is not None
    assert d.result.issued_at == 0.5


def test_network_errors_give_up_after_max_attempts():
    d = drive(policy=AuthPolicy(max_attempts=3))
    for _ in range(2):
        d.throw(NetworkError("reset"))
        d.send(0.0)
    with pytest.raises(ServiceUnavailable, match="cannot reach") as caught:
        d.throw(NetworkError("reset"))
    assert URL in str(caught.value)
    assert len(d.requests) == 3


def test_network_errors_and_5xx_share_one_budget():
    d = drive(policy=AuthPolicy(max_attempts=3))
    d.throw(NetworkError("reset"))
    d.send(0.0)
    d.send(error(502))
    d.send(0.0)
    with pytest.raises(ServiceUnavailable):
        d.send(error(502))


# -- nothing secret in a repr --------------------------------------------------------------------


def test_reprs_never_show_the_token_or_the_secret():
    token = Token(ACCESS, 0.0, 60.0, frozenset({"view:interaction"}))
    assert ACCESS not in repr(token)
    assert ACCESS not in str(token)
    assert "view:interaction" in repr(token)
    credentials = ClientCredentials(CLIENT_ID, SECRET, scope="x")
    assert SECRET not in repr(credentials)
    assert CLIENT_ID in repr(credentials)
    jwt = JwtBearer(CLIENT_ID, "aud", Signer())
    assert "Signer" not in repr(jwt)
