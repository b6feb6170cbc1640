"""Helpers every benchmark shares: a loopback emulator process, and where results go."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "bench-results"


@contextlib.contextmanager
def emulator_process(*args: str) -> Iterator[str]:
    """Run ``ivrstream emulator`` on 127.0.0.1 port 0 in its own process; yield its base URL."""
    with ivrstream_process("emulator", *args) as base_url:
        yield base_url


@contextlib.contextmanager
def receiver_process(secret: str, db: Path) -> Iterator[str]:
    """Run ``ivrstream receiver`` (SQLite store) in its own process; yield its webhook URL."""
    env = {**os.environ, "WEBHOOK_SECRET": secret}
    with ivrstream_process("receiver", "--db", str(db), env=env) as base_url:
        yield f"{base_url}/webhook"


@contextlib.contextmanager
def ivrstream_process(command: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run an ``ivrstream`` server command on 127.0.0.1 port 0; yield its base URL."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "ivrstream", command, "--port-file", str(port_file), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if proc.poll() is not None or time.monotonic() > deadline:
                    assert proc.stderr is not None
                    raise RuntimeError(f"{command} did not start: {proc.stderr.read().decode()}")
                time.sleep(0.02)
            yield f"http://127.0.0.1:{port_file.read_text().strip()}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def fetch_token(
    base_url: str,
    client_id: str = "demo-client",
    secret: str = "demo-secret",  # noqa: S107 - the emulator's documented demo credential
) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    request = urllib.request.Request(  # noqa: S310 - http on loopback
        f"{base_url}/oauth/token",
        data=b"grant_type=client_credentials",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310 - http on loopback
        return str(json.load(resp)["access_token"])


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        **result,
    }
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
