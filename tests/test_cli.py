"""The command line as a user runs it: real processes, exit codes, no tracebacks."""

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

CLI = [sys.executable, "-m", "ivrstream"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_lists_the_commands():
    result = run("--help")
    assert result.returncode == 0
    assert "emulator" in result.stdout
    assert "demo" in result.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["emulator", "--faults", "explode=1"], "--faults"),
        (["emulator", "--rate", "0"], "--rate"),
        (["emulator", "--port", "70000"], "--port"),
    ],
)
def test_bad_options_exit_2_naming_the_option_without_a_traceback(args, named):
    result = run(*args)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


async def test_emulator_command_serves_on_the_port_it_writes_and_stops_on_sigterm(tmp_path):
    port_file = tmp_path / "port"
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        "emulator",
        "--port-file",
        str(port_file),
        "--seed",
        "3",
        "--rate",
        "50",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(300):
            if port_file.exists():
                break
            await asyncio.sleep(0.02)
        port = int(port_file.read_text())
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert f"http://127.0.0.1:{port}" in line
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/emulator/status") as resp,
        ):
            status = await resp.json()
        assert status["seed"] == 3
        assert "demo-secret" not in line
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
        stderr = (await proc.stderr.read()).decode()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_demo_runs_for_its_duration_and_reads_well_in_a_log(tmp_path):
    env = {**os.environ, "COLUMNS": "80"}
    result = subprocess.run(
        [*CLI, "demo", "--duration", "1.5", "--rate", "20"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Main IVR" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_config_show_redacts_secrets(tmp_path):
    import json as jsonlib
    import os as oslib

    env = {
        **oslib.environ,
        "GENESYS_CLIENT_SECRET": "s3cr3t-value",
        "WEBHOOK_URL": "https://user:hook-password@hooks.example.com/ivr",
        "WEBHOOK_SECRET": "whsec_c2VjcmV0",
    }
    shown = subprocess.run(
        [*CLI, "config", "show"], capture_output=True, text=True, env=env, timeout=30, check=False
    )
    assert shown.returncode == 0, shown.stderr
    as_json = subprocess.run(
        [*CLI, "config", "show", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    for output in (shown.stdout, as_json.stdout):
        assert "s3cr3t-value" not in output
        assert "hook-password" not in output
        assert "whsec_c2VjcmV0" not in output
    data = jsonlib.loads(as_json.stdout)
    assert data["genesys"]["client_secret"] == "[redacted]"
    assert data["sinks"]["webhook"]["url"] == "https://user:[redacted]@hooks.example.com/ivr"
    assert '"interaction.routing.type" = "IVR"' in shown.stdout


def test_run_names_an_unknown_region_and_exits_2(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ivrstream.cli import main

    for name in ("GENESYS_TENANT_URL", "GENESYS_ENV", "IVRSTREAM_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GENESYS_CLIENT_ID", "someone")
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "something")
    result = CliRunner().invoke(
        main, ["run", "--region", "atlantis-1", "--journal", str(tmp_path / "j.db")]
    )
    assert result.exit_code == 2
    assert "genesys.region" in result.output
    assert "atlantis-1" in result.output


def test_importing_the_package_main_does_not_run_the_command_line():
    # a spawned child process (the audit log's) imports the parent's __main__ under another
    # name: that must not start the command line again
    import runpy

    namespace = runpy.run_module("ivrstream.__main__", run_name="__mp_main__")
    assert callable(namespace["main"])
