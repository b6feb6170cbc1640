"""``ivrstream audit keygen | verify`` as a user runs them: output, --json and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ivrstream.audit import load_private_key
from ivrstream.cli import main
from tests.test_audit import body, journal_with, lines_of, write_trail


def audit(*args: str | Path) -> Result:
    return CliRunner().invoke(main, ["audit", *map(str, args)])


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    result = audit("keygen", "--out", tmp_path / "keys")
    assert result.exit_code == 0, result.output
    private, public = (
        tmp_path / "keys" / "audit-signing.pem",
        tmp_path / "keys" / "audit-signing.pub.pem",
    )
    assert str(private) in result.output
    return private, public


def test_keygen_writes_the_pair_private_key_0600_and_refuses_to_overwrite(tmp_path, keys):
    private, public = keys
    assert private.stat().st_mode & 0o777 == 0o600
    assert b"PUBLIC KEY" in public.read_bytes()
    again = audit("keygen", "--out", tmp_path / "keys")
    assert again.exit_code == 2
    assert "already exists" in again.stderr


def test_an_untouched_signed_trail_verifies_with_exit_0(tmp_path, keys):
    private, public = keys
    write_trail(tmp_path / "trail", key=load_private_key(private), events=30)
    result = audit("verify", tmp_path / "trail", "--public-key", public)
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "intact" in result.output
    assert "INVALID" not in result.output


def test_unsigned_trail_says_so_and_fails_when_a_public_key_is_given(tmp_path, keys):
    write_trail(tmp_path / "trail", events=10)
    plain = audit("verify", tmp_path / "trail", "--json")
    assert plain.exit_code == 0
    assert (
        "checkpoints unsigned: integrity rests on the hash chain only"
        in json.loads(plain.output)["chain"]["notes"]
    )
    keyed = audit("verify", tmp_path / "trail", "--public-key", keys[1], "--json")
    assert keyed.exit_code == 1
    assert json.loads(keyed.output)["chain"]["first_failure"]["reason"] == "UNSIGNED"


def test_a_tampered_trail_exits_1_naming_file_line_and_reason(tmp_path):
    files = write_trail(tmp_path / "trail", events=30)
    lines = lines_of(files[1])
    del lines[2]
    files[1].write_bytes(b"".join(lines))
    human = audit("verify", tmp_path / "trail")
    assert human.exit_code == 1
    assert "INVALID" in human.output
    assert "DELETED" in human.output
    assert "NOT INTACT" in human.output
    data = json.loads(audit("verify", *files, "--json").output)
    assert data["ok"] is False
    assert data["chain"]["first_failure"] | {"detail": ""} == {
        "reason": "DELETED",
        "file": files[1].name,
        "line": 3,
        "seq": data["chain"]["files"][1]["first_seq"] + 2,
        "detail": "",
    }
    assert [f["status"] for f in data["chain"]["files"]][:2] == ["valid", "INVALID"]


def test_against_journal_exits_0_when_both_agree_and_1_when_they_do_not(tmp_path):
    bodies = [body(n) for n in range(12)]
    journal = journal_with(tmp_path / "journal.db", bodies)
    write_trail(tmp_path / "trail", events=12)
    agreed = audit("verify", tmp_path / "trail", "--against-journal", journal, "--json")
    assert agreed.exit_code == 0, agreed.output
    assert json.loads(agreed.output)["journal"]["journal_events"] == 12

    short = journal_with(tmp_path / "short.db", bodies[:11])
    human = audit("verify", tmp_path / "trail", "--against-journal", short)
    assert human.exit_code == 1
    assert "NOT_IN_JOURNAL" in human.output
    assert "ev-000011" in human.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["verify"], "PATHS"),
        (["verify", "/nonexistent/audit"], "/nonexistent/audit"),
        (["verify", "EMPTY"], "no audit-*.jsonl files"),
        (["verify", "TRAIL", "--public-key", "/nonexistent.pem"], "--public-key"),
        (["verify", "TRAIL", "--public-key", "NOTAKEY"], "not a PEM public key"),
        (["verify", "TRAIL", "--against-journal", "NOTAKEY"], "not a journal"),
    ],
)
def test_usage_errors_exit_2_naming_what_is_wrong(tmp_path, args, named):
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-key.pem").write_text("hello\n")
    write_trail(tmp_path / "trail", events=3)
    where = {"EMPTY": tmp_path / "empty", "TRAIL": tmp_path / "trail"}
    where["NOTAKEY"] = tmp_path / "not-a-key.pem"
    result = audit(*[str(where.get(a, a)) for a in args])
    assert result.exit_code == 2, result.output
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_the_installed_command_exits_with_the_verdict(tmp_path):
    files = write_trail(tmp_path / "trail", events=10)
    run = [sys.executable, "-m", "ivrstream", "audit", "verify", str(tmp_path / "trail")]
    ok = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stderr
    files[0].write_bytes(files[0].read_bytes().replace(b'"service_start"', b'"service_stopp"'))
    bad = subprocess.run(run, capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 1
    assert "EDITED" in bad.stdout
