"""The example files in the repository stay valid."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_validate(path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENESYS_")}
    env.update(GENESYS_CLIENT_ID="example", GENESYS_CLIENT_SECRET="example-secret")
    result = subprocess.run(
        [sys.executable, "-m", "ivrstream", "validate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_an_example():
    assert EXAMPLES


async def test_the_library_example_follows_events(emulator_factory, tmp_path):
    import asyncio

    from tests.test_cli_run import environment

    async with emulator_factory(rate=50, time_scale=1000) as emu:
        env = environment(emu)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).parent.parent / "examples" / "library.py"),
            "--events",
            "50",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "connected"
    assert lines[-1].startswith("by type:")
    assert len(lines) >= 52
