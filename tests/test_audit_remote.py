"""The audit log in its own process: the same trail as in-process, errors handed back, and a
child that never outlives the pipe to its service."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from ivrstream.audit import records, verify
from ivrstream.audit.errors import AuditWriteError
from ivrstream.audit.records import EventFacts
from ivrstream.audit.remote import NICENESS, RemoteAuditLog
from ivrstream.sinks.base import Delivery


def event_body(n: int) -> bytes:
    return msgspec.json.encode(
        {"event_id": f"e{n}", "event_type": "flow.start", "data": {"n": n, "text": "é€"}}
    )


def open_remote(directory: Path) -> RemoteAuditLog:
    return RemoteAuditLog(
        directory,
        max_bytes=1 << 20,
        fsync_interval=1.0,
        checkpoint_interval=3600.0,
        signing_key_file=None,
    ).open()


def lines(directory: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("audit-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def test_deliveries_and_facts_become_the_same_event_records(tmp_path):
    trail = open_remote(tmp_path)
    time = "2026-05-01T10:00:00.000Z"
    deliveries = [
        Delivery(n, f"e{n}", "conv", "flow.start", event_body(n), n, time, time) for n in (1, 2)
    ]
    facts = [EventFacts("e3", "flow.end", None, time, None, event_body(3))]
    trail.append([records.service_start("test")])
    trail.append_events(deliveries)  # MessagePack across the pipe
    trail.append_events(facts)  # anything else: pickled
    assert trail.seq == 5  # the opening checkpoint, the start and three events
    trail.close()
    written = [r for r in lines(tmp_path) if r["kind"] == "event"]
    assert [r["event_id"] for r in written] == ["e1", "e2", "e3"]
    assert [r["event_sha256"] for r in written] == [
        records.sha256_hex(event_body(n)) for n in (1, 2, 3)
    ]
    assert [r["sequence_id"] for r in written] == [1, 2, None]
    assert verify([tmp_path]).ok


def test_an_error_in_the_log_comes_back_and_the_log_goes_on(tmp_path):
    trail = open_remote(tmp_path)
    with pytest.raises(ValueError, match="cannot append an audit record of kind"):
        trail.append([{"kind": "no-such-kind"}])
    trail.append([records.service_start("test")])
    trail.close()
    assert verify([tmp_path]).ok


def test_the_child_ends_when_its_pipe_closes(tmp_path):
    trail = open_remote(tmp_path)
    process = trail._process
    assert process is not None
    assert process.stdin is not None
    process.stdin.close()  # what the kernel does when the service dies, even by kill -9
    assert process.wait(timeout=10) == 0
    assert process.stdout is not None
    process.stdout.close()


def test_calls_to_a_child_that_died_fail_clearly(tmp_path):
    trail = open_remote(tmp_path)
    process = trail._process
    assert process is not None
    process.kill()
    process.wait(timeout=10)
    with pytest.raises(AuditWriteError, match="the audit log process is gone"):
        trail.tick()
    with pytest.raises(AuditWriteError):
        trail.close()  # still lets go of the pipes


def test_the_log_runs_behind_the_service_for_the_cpu(tmp_path):
    trail = open_remote(tmp_path)
    process = trail._process
    assert process is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, process.pid) == min(19, ours + NICENESS)
    trail.close()
