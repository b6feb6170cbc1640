"""PostgreSQL and NATS for the tests that need the real servers.

On a machine without them the tests are skipped, with the reason shown; under ``CI=true`` they
fail instead, so CI can never pass by skipping them. Addresses can be overridden with
``IVRSTREAM_TEST_POSTGRES_DSN`` and ``IVRSTREAM_TEST_NATS_URL``.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

POSTGRES_DSN = os.environ.get(
    "IVRSTREAM_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
)
NATS_URL = os.environ.get("IVRSTREAM_TEST_NATS_URL", "nats://127.0.0.1:4222")


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1.0
        ):
            return True
    except OSError:
        return False


def unavailable(what: str) -> None:
    """Skip (or, under CI=true, fail) because ``what`` is not there."""
    reason = f"{what} is not reachable on this machine"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}, and CI=true: service tests must run in CI")
    pytest.skip(reason)


def require_postgres() -> str:
    if not reachable(POSTGRES_DSN, 5432):
        unavailable(f"PostgreSQL at {POSTGRES_DSN}")
    return POSTGRES_DSN


def require_nats() -> str:
    if not reachable(NATS_URL, 4222):
        unavailable(f"NATS at {NATS_URL}")
    return NATS_URL
