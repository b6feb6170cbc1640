"""``ivrstream validate`` on a Notifications configuration: topic syntax, counts and budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivrstream.cli import main

EXAMPLE = Path(__file__).parent.parent / "examples" / "ivrstream.toml"
FLOW = "3d1f7c2a-9b4e-4c1d-8e2f-6a7b8c9d0e1f"
QUEUE = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
SECRET = "s3cr3t-value"


def notifications_config(tmp_path: Path, section: str) -> Path:
    """The shipped example switched to the Notifications source, plus ``section``."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert 'source = "eventstreams"' in text
    text = text.replace('source = "eventstreams"', 'source = "notifications"')
    text = text.replace("/var/lib/ivrstream", str(tmp_path))
    path = tmp_path / "notifications.toml"
    path.write_text(f"{text}\n[notifications]\n{section}", encoding="utf-8")
    return path


def validate(path: Path, *args: str):
    environment = {k: None for k in os.environ if k.startswith(("GENESYS_", "IVRSTREAM_", "WEB"))}
    environment.update(GENESYS_CLIENT_ID="example", GENESYS_CLIENT_SECRET=SECRET)
    return CliRunner().invoke(main, ["validate", "--config", str(path), *args], env=environment)


GOOD = f"""coverage = ["flows", "queues", "conversations"]
flow_ids = ["{FLOW}"]
queue_ids = ["{QUEUE}"]
max_channels = 4
"""


def test_a_good_notifications_config_shows_its_budget_and_exits_0(tmp_path):
    result = validate(notifications_config(tmp_path, GOOD))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "source: notifications" in lines
    budget = next(line for line in lines if line.startswith("notifications:"))
    assert "2 base topic(s) on 1 of 4 channel(s) × 1,000 topics" in budget
    # 998 left on the first channel (124 conversations of 8 topics) + 3 × 125
    assert "a conversation costs 8 topic(s): room for 499 at once" in budget
    assert "channels_url: https://api.mypurecloud.com/api/v2/notifications/channels" in lines
    assert not any(line.startswith("subscription:") for line in lines)  # Event Streams only
    assert "events_url" not in result.output
    assert SECRET not in result.output
    assert lines[-1] == "valid"


def test_json_includes_the_notifications_section(tmp_path):
    result = validate(notifications_config(tmp_path, GOOD), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True
    assert data["source"] == "notifications"
    assert "subscription" not in data
    assert data["notifications"] == {
        "coverage": ["flows", "queues", "conversations"],
        "base_topics": 2,
        "channels": 1,
        "max_channels": 4,
        "topics_per_channel": 1_000,
        "conversation_units": 1,
        "conversation_cost": 8,
        "concurrent_conversations": 499,
        "released_on_end": True,
        "combined_counts_parts": True,
        "flows_resolved_at_start": False,
    }


def test_bad_ids_and_limits_beyond_genesys_are_named_and_exit_2(tmp_path):
    section = """coverage = ["flows", "queues", "conversations"]
flow_ids = ["main-ivr", "{id}"]
queue_ids = ["*", ""]
max_channels = 21
topics_per_channel = 1001
"""
    path = notifications_config(tmp_path, section)
    result = validate(path)
    assert result.exit_code == 2, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("PROBLEM")]
    assert [p.split(":")[0] for p in problems] == [
        "PROBLEM notifications.max_channels",
        "PROBLEM notifications.topics_per_channel",
        "PROBLEM notifications.flow_ids[0]",
        "PROBLEM notifications.flow_ids[1]",
        "PROBLEM notifications.queue_ids[0]",
        "PROBLEM notifications.queue_ids[1]",
    ]
    assert "got 21" in problems[0]
    assert "got 1001" in problems[1]
    assert "must be a UUID, got 'main-ivr'" in problems[2]
    assert "EventBridge" in problems[3]
    # the budget is still shown, with the limits that would be used
    assert "0 base topic(s) on 0 of 20 channel(s) × 1,000 topics" in result.output
    assert result.output.splitlines()[-1] == "invalid: 6 problem(s)"

    data = json.loads(validate(path, "--json").output)
    assert data["ok"] is False
    assert {p["field"] for p in data["problems"]} >= {
        "notifications.max_channels",
        "notifications.flow_ids[0]",
    }
    assert data["notifications"]["max_channels"] == 20


def test_a_budget_that_cannot_work_is_a_problem(tmp_path):
    section = f"""coverage = ["queues", "conversations"]
queue_ids = ["{QUEUE}", "{FLOW}"]
max_channels = 1
topics_per_channel = 9
renew_before = 90000
"""
    result = validate(notifications_config(tmp_path, section), "--json")
    assert result.exit_code == 2
    data = json.loads(result.output)
    messages = {p["field"]: p["message"] for p in data["problems"]}
    assert "no room for a single conversation" in messages["notifications.max_channels"]
    assert "lifetime" in messages["notifications.renew_before"]
    assert data["notifications"]["concurrent_conversations"] == 0


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ('detail_kinds = ["flow.middle"]\n', "notifications.detail_kinds"),
        ("max_channels = 'many'\n", "notifications.max_channels"),
        ("heartbeat_timeout = 0\n", "notifications.heartbeat_timeout"),
    ],
)
def test_mistyped_settings_exit_2_naming_the_field(tmp_path, section, field):
    result = validate(notifications_config(tmp_path, section))
    assert result.exit_code == 2
    assert field in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_event_streams_configs_still_show_their_subscription(tmp_path):
    environment = {k: None for k in os.environ if k.startswith(("GENESYS_", "IVRSTREAM_", "WEB"))}
    environment.update(GENESYS_CLIENT_ID="example", GENESYS_CLIENT_SECRET=SECRET)
    text = EXAMPLE.read_text(encoding="utf-8").replace("/var/lib/ivrstream", str(tmp_path))
    path = tmp_path / "es.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", "--config", str(path)], env=environment)
    assert result.exit_code == 0, result.output
    assert "subscription:" in result.output
    assert "events_url: wss://api.mypurecloud.com/api/v2/events" in result.output
    assert "notifications:" not in result.output


@pytest.mark.parametrize(("section", "code"), [(GOOD, 0), ('flow_ids = ["nope"]\n', 2)])
def test_the_installed_command_exits_without_a_traceback(tmp_path, section, code):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENESYS_", "IVRSTREAM_"))}
    env.update(GENESYS_CLIENT_ID="example", GENESYS_CLIENT_SECRET=SECRET)
    config = notifications_config(tmp_path, section)
    result = subprocess.run(
        [sys.executable, "-m", "ivrstream", "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "notifications:" in result.stdout


def test_validate_json_reports_a_file_that_does_not_load_as_json(tmp_path):
    import json

    from click.testing import CliRunner

    from ivrstream.cli import main

    path = tmp_path / "bad.toml"
    path.write_text('[genesys]\nregoin = "eu-west-1"\n')
    result = CliRunner().invoke(main, ["validate", "--config", str(path), "--json"])
    assert result.exit_code == 2
    verdict = json.loads(result.stdout)
    assert verdict["ok"] is False
    assert verdict["problems"][0]["field"] == "genesys.regoin"
