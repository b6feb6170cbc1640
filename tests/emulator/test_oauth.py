import base64
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ivrstream.emulator.config import ClientSpec
from tests.emulator.client import token

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def test_client_credentials_grant_issues_a_bearer_token(emulator, http):
    async with http.post(
        f"{emulator.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("demo-client", "demo-secret"),
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 86_400
    assert "view:interaction" in body["scope"].split()
    async with http.get(
        f"{emulator.base_url}/api/v2/flows",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    ) as resp:
        assert resp.status != 401


@pytest.mark.parametrize(
    "headers",
    [
        basic("demo-client", "wrong"),
        basic("nobody", "demo-secret"),
        {"Authorization": "Basic !!"},
        {},
    ],
)
async def test_bad_credentials_get_401_with_an_oauth_error_body(emulator, http, headers):
    async with http.post(
        f"{emulator.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=headers,
    ) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["error"] == "invalid_client"
    assert body["error_description"]


async def test_unknown_grant_type_is_400(emulator, http):
    async with http.post(
        f"{emulator.base_url}/oauth/token",
        data={"grant_type": "password"},
        headers=basic("demo-client", "demo-secret"),
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "unsupported_grant_type"


async def test_expires_in_is_configurable(emulator_factory, http):
    async with (
        emulator_factory(traffic=False, token_ttl=300) as emu,
        http.post(
            f"{emu.base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic("demo-client", "demo-secret"),
        ) as resp,
    ):
        assert (await resp.json())["expires_in"] == 300


async def test_a_token_can_be_asked_for_fewer_scopes(emulator, http):
    async with http.post(
        f"{emulator.base_url}/oauth/token",
        data={"grant_type": "client_credentials", "scope": "analytics view:everything"},
        headers=basic("demo-client", "demo-secret"),
    ) as resp:
        assert (await resp.json())["scope"] == "analytics"


async def test_injected_429_carries_retry_after_then_recovers(emulator, http):
    emulator.set_faults(token_rate_limited=2, retry_after=7)
    statuses = []
    for _ in range(3):
        async with http.post(
            f"{emulator.base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic("demo-client", "demo-secret"),
        ) as resp:
            statuses.append((resp.status, resp.headers.get("Retry-After")))
    assert statuses == [(429, "7"), (429, "7"), (200, None)]
    assert emulator.ledger.fault_counts["token_rate_limited"] == 2


async def test_injected_5xx(emulator, http):
    emulator.set_faults(token_errors=1)
    async with http.post(
        f"{emulator.base_url}/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=basic("demo-client", "demo-secret"),
    ) as resp:
        assert resp.status == 503
    assert await token(http, emulator)


def rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def ec_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.mark.parametrize(("pair", "algorithm"), [(rsa_pair, "RS256"), (ec_pair, "ES256")])
async def test_jwt_bearer_grant_rfc7523(emulator_factory, http, pair, algorithm):
    private, public = pair()
    other_private, _ = pair()
    client = ClientSpec(client_id="jwt-client", secret="unused", jwt_public_key=public)
    async with emulator_factory(traffic=False, clients=[client]) as emu:

        def assertion(key: bytes = private, **claims) -> str:
            now = time.time()
            body = {
                "iss": "jwt-client",
                "sub": "jwt-client",
                "aud": f"{emu.base_url}/oauth/token",
                "iat": int(now),
                "exp": int(now) + 300,
                **claims,
            }
            return jwt.encode(body, key, algorithm=algorithm)

        async def grant(value: str) -> int:
            async with http.post(
                f"{emu.base_url}/oauth/token", data={"grant_type": JWT_GRANT, "assertion": value}
            ) as resp:
                return resp.status

        assert await grant(assertion()) == 200
        assert await grant(assertion(key=other_private)) == 400  # signed by someone else
        assert await grant(assertion(aud="https://login.example.com")) == 400
        assert await grant(assertion(exp=int(time.time()) - 10)) == 400
        assert await grant(assertion(iss="someone-else")) == 400
        assert await grant("not-a-jwt") == 400


async def test_rest_calls_need_a_valid_token(emulator, http):
    async with http.get(f"{emulator.base_url}/api/v2/flows") as resp:
        assert resp.status == 401
    async with http.get(
        f"{emulator.base_url}/api/v2/flows", headers={"Authorization": "Bearer nope"}
    ) as resp:
        assert resp.status == 401
