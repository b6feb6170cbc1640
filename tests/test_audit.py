"""The audit trail: the writer's format, rotation, fsync cadence and crash recovery, and a verifier
that names every kind of tampering exactly."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivrstream.audit import (
    AuditError,
    AuditKeyError,
    AuditLog,
    AuditPathError,
    AuditRecoveryError,
    AuditWriteError,
    against_journal,
    generate_keypair,
    load_private_key,
    load_public_key,
    records,
    verification_record,
    verify,
    write_keypair,
)
from ivrstream.audit.keys import ENV_KEY, key_id, sign
from ivrstream.audit.records import ZERO_HASH, canonical
from ivrstream.audit.report import (
    BAD_SIGNATURE,
    DELETED,
    EDITED,
    GAP,
    INSERTED,
    INVALID,
    MISSING,
    REORDERED,
    REPLACED,
    TRUNCATED,
    UNSIGNED,
    UNSIGNED_NOTE,
    VALID,
    Finding,
    Report,
)
from ivrstream.isotime import format_ms
from ivrstream.journal import JournalWriter, WriteBatch
from ivrstream.logs import register_secret
from ivrstream.testing import FakeClock

MIDNIGHT = 1_780_012_800.0  # 2026-05-29T00:00:00Z


# -- helpers -------------------------------------------------------------------------------------


class Fsyncs:
    """The fsync seam: counts calls and can be told to fail."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: OSError | None = None

    def __call__(self, fd: int) -> None:
        if self.error is not None:
            raise self.error
        self.calls += 1


def advance(clock: FakeClock, seconds: float) -> None:
    asyncio.run(clock.advance(seconds))


def body(n: int, *, event_id: str | None = None) -> bytes:
    """A canonical event as the journal stores it."""
    return msgspec.json.encode(
        {
            "event_id": event_id or f"ev-{n:06d}",
            "event_type": "flow.start" if n % 2 else "flow.end",
            "conversation_id": f"conv-{n % 3}",
            "sequence_id": n,
            "event_time": format_ms(1_780_000_000_000 + n),
            "received_at": format_ms(1_780_000_000_250 + n),
            "subscription_id": "sub-1",
        }
    )


def new_log(directory: Path, clock: FakeClock, **options: Any) -> AuditLog:
    ids = itertools.count(1)
    options.setdefault("fsync", Fsyncs())
    options.setdefault("max_bytes", 3_000)
    return AuditLog(directory, clock, id_factory=lambda: f"audit-{next(ids)}", **options)


def write_trail(
    directory: Path,
    *,
    key: Ed25519PrivateKey | None = None,
    events: int = 40,
    clock: FakeClock | None = None,
    first: int = 0,
) -> list[Path]:
    """A closed trail of several files: service start, ``events`` events, service stop."""
    with new_log(directory, clock or FakeClock(), signing_key=key) as log:
        log.append([records.service_start("test")])
        for n in range(first, first + events):
            log.append([records.event_record_from_body(body(n))])
        log.append([records.service_stop("test")])
    return files_in(directory)


def files_in(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-*.jsonl"))


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def decode(line: bytes) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.json.decode(line)
    return result


def encode(record: dict[str, Any]) -> bytes:
    return canonical(record) + b"\n"


def all_records(directory: Path) -> list[dict[str, Any]]:
    return [decode(line) for path in files_in(directory) for line in lines_of(path)]


def failure(report: Report) -> Finding:
    assert not report.ok
    assert report.first_failure is not None
    return report.first_failure


def status(report: Report) -> dict[str, str]:
    return {f.name: f.status for f in report.files}


def middle_event(path: Path) -> int:
    """The index of an event record in the middle of ``path``."""
    events = [i for i, line in enumerate(lines_of(path)) if decode(line)["kind"] == "event"]
    return events[len(events) // 2]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


# -- the record format ---------------------------------------------------------------------------


def test_lines_are_canonical_records_chained_by_the_sha256_of_the_previous_line(tmp_path):
    clock = FakeClock()
    files = write_trail(tmp_path, events=12, clock=clock)
    lines = [line for path in files for line in lines_of(path)]
    previous, ids = ZERO_HASH, set()
    for seq, line in enumerate(lines, start=1):
        assert line.endswith(b"\n")
        record = decode(line)
        assert canonical(record) + b"\n" == line
        assert record["seq"] == seq
        assert record["prev"] == previous
        assert record["logged_at"] == format_ms(round(clock.time() * 1000))
        ids.add(record["audit_id"])
        previous = hashlib.sha256(line[:-1]).hexdigest()
    assert len(ids) == len(lines)
    first = decode(lines[0])
    assert first["kind"] == "file_opened"
    assert first["previous_file"] is None


def test_an_event_record_names_the_event_and_hashes_its_canonical_bytes():
    event = body(7)
    record = records.event_record_from_body(event)
    assert record == {
        "kind": "event",
        "event_id": "ev-000007",
        "event_type": "flow.start",
        "sequence_id": 7,
        "event_time": format_ms(1_780_000_000_007),
        "receive_latency_ms": 250.0,
        "event_sha256": hashlib.sha256(event).hexdigest(),
    }
    assert (
        records.event_record_from_body(event, receive_latency_ms=3.5)["receive_latency_ms"] == 3.5
    )


_texts = st.one_of(st.none(), st.text(max_size=30))
_times = st.one_of(
    _texts,
    st.integers(0, 4_000_000_000_000).map(format_ms),
    st.sampled_from(["2026-05-01T10:00:00", "2026-05-01T12:00:00+02:00", "2026-13-01T00:00Z"]),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    event_id=st.text(max_size=40),
    event_type=_texts,
    sequence_id=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
    event_time=_times,
    received_at=_times,
    raw=st.binary(max_size=64),
    seq=st.integers(1, 2**53),
)
def test_the_fast_event_line_is_the_canonical_json_of_the_same_record(
    event_id, event_type, sequence_id, event_time, received_at, raw, seq
):
    facts = records.EventFacts(event_id, event_type, sequence_id, event_time, received_at, raw)
    seal = {"seq": seq, "prev": ZERO_HASH, "logged_at": format_ms(0), "audit_id": "a-1"}
    record = records.event_record(
        raw,
        event_id=event_id,
        event_type=event_type or None,  # a delivery's "" (no type) is recorded as null
        sequence_id=sequence_id,
        event_time=event_time,
        receive_latency_ms=records.latency_ms(event_time, received_at),
    )
    assert records.event_line(facts, **seal) == canonical({**record, **seal})


def test_latency_is_received_minus_event_time_and_none_when_unknown():
    assert records.latency_ms("2026-05-01T10:00:00.000Z", "2026-05-01T10:00:00.250Z") == 250.0
    assert records.latency_ms("2026-05-01T10:00:00", "2026-05-01T12:00:01+02:00") == 1000.0
    assert records.latency_ms("2026-05-01T10:00:01Z", "2026-05-01T10:00:00Z") == -1000.0
    assert records.latency_ms(None, "2026-05-01T10:00:00Z") is None
    assert records.latency_ms("yesterday", "2026-05-01T10:00:00Z") is None


def test_append_events_writes_the_lines_append_would(tmp_path):
    events = [body(n) for n in range(30)]
    with new_log(tmp_path / "dicts", FakeClock()) as log:
        log.append([records.event_record_from_body(b) for b in events])
    with new_log(tmp_path / "facts", FakeClock()) as log:
        log.append_events([records.event_facts(b) for b in events])
    assert len(files_in(tmp_path / "facts")) > 1  # rotated by size, like the other
    dicts = [p.read_bytes() for p in files_in(tmp_path / "dicts")]
    facts = [p.read_bytes() for p in files_in(tmp_path / "facts")]
    assert facts == dicts
    assert verify([tmp_path / "facts"]).ok


def test_operational_records_keep_no_secrets_and_cannot_set_what_the_log_assigns():
    register_secret("s3cr3t-token-value")
    record = records.auth_failure("bad token s3cr3t-token-value", status=401)
    assert "s3cr3t" not in msgspec.json.encode(record).decode()
    assert records.config_loaded(b"[genesys]\nclient_secret='x'\n")["config_sha256"] == (
        hashlib.sha256(b"[genesys]\nclient_secret='x'\n").hexdigest()
    )
    assert records.subscription_sent("c1", ["b", "a"])["topics"] == 2
    with pytest.raises(ValueError, match="seq"):
        records.operational("dlq_retry", seq=3)
    with pytest.raises(ValueError, match="not an operational"):
        records.operational("checkpoint")


def test_every_operational_fact_an_auditor_asks_for_can_be_recorded(tmp_path):
    facts = [
        records.service_start("1.0", pid=4242),
        records.config_loaded(b"[genesys]\n", source="ivrstream.toml"),
        records.auth_failure("invalid_client", status=401),
        records.connection_opened("c1", dialect="eventstreams"),
        records.subscription_sent("c1", ["v2.detail.events.conversation.x.customer.start"]),
        records.gap_opened("g1", stream="s1", first_seq=5, last_seq=9),
        records.gap_closed("g1", state="filled"),
        records.dead_lettered("webhook", event_id="ev-1", error="410 Gone", attempts=3),
        records.dlq_retry("webhook", count=1),
        records.dlq_purge(None, count=2),
        records.connection_closed("c1", reason="server going away", code=1001),
        records.service_stop("SIGTERM"),
    ]
    with new_log(tmp_path, FakeClock()) as log:
        log.append(facts)
        log.append([verification_record(verify([tmp_path]))])
    kinds = {r["kind"] for r in all_records(tmp_path)}
    assert kinds >= records.OPERATIONAL_KINDS
    assert verify([tmp_path]).ok


def test_append_refuses_records_the_log_writes_itself_or_fields_it_assigns(tmp_path):
    with new_log(tmp_path, FakeClock()) as log:
        with pytest.raises(ValueError, match="checkpoint"):
            log.append([{"kind": "checkpoint", "records": 1}])
        with pytest.raises(ValueError, match="prev"):
            log.append([{"kind": "event", "prev": ZERO_HASH}])
        assert log.seq == 1  # nothing but the file_opened record
    with pytest.raises(AuditError, match="not open"):
        log.append([records.service_start("x")])


# -- rotation, checkpoints, fsync ----------------------------------------------------------------


def test_files_rotate_by_size_closed_by_a_checkpoint_and_opened_naming_the_previous(tmp_path):
    files = write_trail(tmp_path, events=60)
    assert len(files) >= 4
    assert [p.name for p in files] == [
        f"audit-20260528-{n:06d}.jsonl" for n in range(1, 1 + len(files))
    ]
    for older, newer in itertools.pairwise(files):
        old_lines, new_lines = lines_of(older), lines_of(newer)
        assert older.stat().st_size <= 3_000 + len(old_lines[-1])  # only the seal goes over
        closing, opening = decode(old_lines[-1]), decode(new_lines[0])
        assert closing["kind"] == "checkpoint"
        assert closing["reason"] == "rotation"
        assert closing["file"] == older.name
        assert closing["records"] == len(old_lines) - 1
        assert closing["last_hash"] == hashlib.sha256(old_lines[-2][:-1]).hexdigest()
        assert opening["kind"] == "file_opened"
        assert opening["file"] == newer.name
        assert opening["previous_file"] == older.name
        assert opening["previous_records"] == len(old_lines)
        assert opening["previous_last_hash"] == hashlib.sha256(old_lines[-1][:-1]).hexdigest()
    last = decode(lines_of(files[-1])[-1])
    assert (last["kind"], last["reason"]) == ("checkpoint", "close")
    assert verify([tmp_path]).ok


def test_files_rotate_when_the_utc_day_changes_even_when_idle(tmp_path):
    clock = FakeClock(start=MIDNIGHT - 90)
    with new_log(tmp_path, clock, max_bytes=1_000_000) as log:
        log.append([records.service_start("test")])
        advance(clock, 60)
        log.tick()
        assert log.file == "audit-20260528-000001.jsonl"
        advance(clock, 60)
        log.tick()
        assert log.file == "audit-20260529-000002.jsonl"
        log.append([records.service_stop("test")])
    assert [p.name for p in files_in(tmp_path)] == [
        "audit-20260528-000001.jsonl",
        "audit-20260529-000002.jsonl",
    ]
    assert verify([tmp_path]).ok


def test_names_keep_chain_order_when_the_clock_goes_back_a_day(tmp_path):
    clock = FakeClock(start=MIDNIGHT + 60)
    write_trail(tmp_path, events=5, clock=clock)
    write_trail(tmp_path, events=30, clock=FakeClock(start=MIDNIGHT - 86_400))
    names = [p.name for p in files_in(tmp_path)]
    assert all(name.startswith("audit-20260529-") for name in names)
    assert verify([tmp_path]).ok


def test_a_checkpoint_seals_the_log_every_interval_on_append_or_tick(tmp_path):
    clock = FakeClock()
    with new_log(tmp_path, clock, checkpoint_interval=3600, max_bytes=1_000_000) as log:
        log.append([records.service_start("test")])
        advance(clock, 3599)
        log.append([records.event_record_from_body(body(1))])
        log.tick()
        assert [r["kind"] for r in all_records(tmp_path)] == [
            "file_opened",
            "service_start",
            "event",
        ]
        advance(clock, 1)
        log.append([records.event_record_from_body(body(2))])
        advance(clock, 3600)
        log.tick()
    kinds = [(r["kind"], r.get("reason")) for r in all_records(tmp_path)]
    assert kinds[3:] == [
        ("checkpoint", "interval"),
        ("event", None),
        ("checkpoint", "interval"),
        ("checkpoint", "close"),
    ]
    assert verify([tmp_path]).ok


def test_fsync_runs_at_most_once_per_interval_and_always_at_checkpoints_and_close(tmp_path):
    clock, fsyncs = FakeClock(), Fsyncs()
    log = new_log(tmp_path, clock, fsync=fsyncs, fsync_interval=1.0, max_bytes=1_000_000).open()

    def fsynced_by(action: Any) -> int:
        before = fsyncs.calls
        action()
        return fsyncs.calls - before

    def event(n: int) -> Any:
        return lambda: log.append([records.event_record_from_body(body(n))])

    assert fsynced_by(event(1)) == 0  # open() synced at t=0
    advance(clock, 0.5)
    assert fsynced_by(event(2)) == 0
    advance(clock, 0.6)
    assert fsynced_by(event(3)) == 1  # 1.1 s since the last fsync
    advance(clock, 0.4)
    assert fsynced_by(log.tick) == 0  # nothing unsynced
    advance(clock, 1.0)
    assert fsynced_by(log.tick) == 0
    assert fsynced_by(event(4)) == 1  # 1.4 s since the last fsync
    assert fsynced_by(event(5)) == 0
    assert not log.maybe_fsync()
    advance(clock, 1.0)
    assert fsynced_by(log.tick) == 1  # an idle log still reaches the disk within the interval
    assert fsynced_by(log.checkpoint) == 1
    assert fsynced_by(event(6)) == 0
    assert fsynced_by(log.sync) == 1
    assert fsynced_by(event(7)) == 0
    assert fsynced_by(log.close) == 1
    assert log.statistics().fsyncs == fsyncs.calls - 1  # the directory's fsync is not the log's


def test_fsync_interval_zero_syncs_every_batch(tmp_path):
    fsyncs = Fsyncs()
    with new_log(tmp_path, FakeClock(), fsync=fsyncs, fsync_interval=0) as log:
        before = fsyncs.calls
        for n in range(5):
            log.append([records.event_record_from_body(body(n))])
        assert fsyncs.calls - before == 5


def test_appends_from_many_threads_form_one_chain(tmp_path):
    with new_log(tmp_path, FakeClock(), max_bytes=20_000) as log:

        def worker(offset: int) -> None:
            for n in range(offset, offset + 50):
                log.append([records.event_record_from_body(body(n))])

        threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(r["kind"] == "event" for r in all_records(tmp_path)) == 200
    assert verify([tmp_path]).ok


# -- restarts and crashes ------------------------------------------------------------------------


def test_a_restart_continues_the_hash_chain_and_the_signature_chain(tmp_path, key):
    clock = FakeClock()
    write_trail(tmp_path, key=key, events=10, clock=clock)
    before = all_records(tmp_path)
    with new_log(tmp_path, clock, signing_key=key) as log:
        assert log.seq == before[-1]["seq"]
        log.append([records.service_start("again")])
        log.checkpoint()
    after = all_records(tmp_path)[len(before) :]
    assert after[0]["seq"] == before[-1]["seq"] + 1
    assert after[1]["kind"] == "checkpoint"
    assert after[1]["prev_signature"] == before[-1]["signature"]
    report = verify([tmp_path], key.public_key())
    assert report.ok
    assert report.signed_checkpoints == report.checkpoints


def crash_copy(source: Path, target: Path) -> Path:
    """What a kill -9 leaves: every byte the OS was handed, no closing checkpoint."""
    target.mkdir()
    for path in files_in(source):
        shutil.copy(path, target / path.name)
    return target


def test_kill_9_leaves_a_half_line_that_reopening_cuts_off_reports_and_continues(tmp_path):
    clock = FakeClock()
    live = new_log(tmp_path / "live", clock).open()
    for n in range(20):
        live.append([records.event_record_from_body(body(n))])
    crashed = crash_copy(tmp_path / "live", tmp_path / "crashed")
    live.close()
    newest = files_in(crashed)[-1]
    whole = newest.read_bytes()
    half = encode(records.event_record_from_body(body(99)) | {"seq": 1})[:57]
    newest.write_bytes(whole + half)
    last_seq = decode(whole.splitlines()[-1])["seq"]

    report = verify([crashed])
    assert failure(report).reason == TRUNCATED  # before the repair, verify names the torn line
    assert failure(report).line == len(whole.splitlines()) + 1

    with new_log(crashed, clock) as log:
        assert log.statistics().repaired_bytes == len(half)
        log.append([records.service_start("after crash")])
    repaired = [r for r in all_records(crashed) if r["kind"] == "torn_line_repaired"]
    assert repaired == [
        repaired[0]
        | {
            "seq": last_seq + 1,
            "file": newest.name,
            "offset": len(whole),
            "discarded_bytes": len(half),
            "discarded_sha256": hashlib.sha256(half).hexdigest(),
        }
    ]
    assert newest.read_bytes().startswith(whole)
    assert [(r["kind"], r.get("reason")) for r in all_records(crashed)][-4:] == [
        ("torn_line_repaired", None),
        ("checkpoint", "recovery"),  # what survived the crash is sealed before anything new
        ("service_start", None),
        ("checkpoint", "close"),
    ]
    report = verify([crashed])
    assert report.ok
    assert any("torn line repaired" in note for f in report.files for note in f.notes)


def test_a_last_line_that_is_not_a_record_is_cut_off_too(tmp_path):
    write_trail(tmp_path, events=3)
    newest = files_in(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes() + b"\x00" * 40 + b"\n")
    with new_log(tmp_path, FakeClock()) as log:
        assert log.statistics().repaired_bytes == 41
    assert verify([tmp_path]).ok


def test_open_refuses_a_file_damaged_beyond_its_last_line(tmp_path):
    write_trail(tmp_path, events=3)
    newest = files_in(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes() + b"garbage\n" + b"more garbage\n")
    with pytest.raises(AuditRecoveryError, match="verify"):
        new_log(tmp_path, FakeClock()).open()


def test_a_crash_before_a_new_file_got_its_first_record(tmp_path):
    clock = FakeClock()
    live = new_log(tmp_path / "live", clock).open()
    n = 0
    while len(files_in(tmp_path / "live")) < 2:
        live.append([records.event_record_from_body(body(n))])
        n += 1
    crashed = crash_copy(tmp_path / "live", tmp_path / "crashed")
    live.close()
    newest = files_in(crashed)[-1]
    newest.write_bytes(b"")  # created, but nothing reached the disk
    with new_log(crashed, clock):
        pass
    assert decode(lines_of(newest)[0])["previous_file"] == files_in(crashed)[0].name
    assert verify([crashed]).ok


def test_a_crash_between_the_rotation_checkpoint_and_the_next_file(tmp_path):
    clock = FakeClock()
    live = new_log(tmp_path / "live", clock).open()
    n = 0
    while len(files_in(tmp_path / "live")) < 2:
        live.append([records.event_record_from_body(body(n))])
        n += 1
    crashed = crash_copy(tmp_path / "live", tmp_path / "crashed")
    live.close()
    files_in(crashed)[-1].unlink()
    report = verify([crashed])
    assert failure(report).reason == MISSING  # the rotation promised a file that is not there
    with new_log(crashed, clock) as log:
        log.append([records.service_start("after crash")])
    assert len(files_in(crashed)) == 2
    assert verify([crashed]).ok


def test_a_real_kill_9_mid_stream_loses_no_whole_record_and_the_chain_continues(tmp_path):
    script = (
        "import sys\n"
        "from ivrstream.audit import AuditLog, records\n"
        "from ivrstream.clock import SystemClock\n"
        "log = AuditLog(sys.argv[1], SystemClock(), max_bytes=20_000, fsync=lambda fd: None)\n"
        "log.open()\n"
        "n = 0\n"
        "while True:\n"
        "    log.append([records.operational('dlq_retry', sink='webhook', count=n)])\n"
        "    n += 1\n"
        "    if n == 300:\n"
        "        print('ready', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert verify([tmp_path]).first_failure is None or failure(verify([tmp_path])).reason in (
        TRUNCATED,
        MISSING,
    )
    with new_log(tmp_path, FakeClock(), max_bytes=20_000) as log:
        log.append([records.service_start("after kill -9")])
    report = verify([tmp_path])
    assert report.ok, report.first_failure
    counts = [r["count"] for r in all_records(tmp_path) if r["kind"] == "dlq_retry"]
    assert counts == list(range(len(counts)))
    assert len(counts) >= 300


def test_a_failed_fsync_stops_appends_until_the_log_is_reopened(tmp_path):
    fsyncs = Fsyncs()
    log = new_log(tmp_path, FakeClock(), fsync=fsyncs, fsync_interval=0).open()
    fsyncs.error = OSError(5, "Input/output error")
    with pytest.raises(AuditWriteError, match="fsync"):
        log.append([records.service_start("test")])
    with pytest.raises(AuditWriteError, match="reopen"):
        log.append([records.service_start("test")])
    log.close()
    fsyncs.error = None
    with new_log(tmp_path, FakeClock(), fsync=fsyncs) as reopened:
        reopened.append([records.service_start("again")])
    assert verify([tmp_path]).ok


# -- an untouched trail --------------------------------------------------------------------------


def test_an_untouched_unsigned_trail_verifies_and_says_what_integrity_rests_on(tmp_path):
    clock = FakeClock()
    write_trail(tmp_path, events=30, clock=clock)
    write_trail(tmp_path, events=30, clock=clock, first=100)  # a restart
    report = verify([tmp_path])
    assert report.ok
    assert report.first_failure is None
    assert len(report.files) >= 4
    assert set(status(report).values()) == {VALID}
    assert report.records == len(all_records(tmp_path))
    assert report.checkpoints > 0
    assert report.signed_checkpoints == 0
    assert UNSIGNED_NOTE in report.notes


def test_a_signed_trail_verifies_with_its_key_and_says_so_without_it(tmp_path, key):
    write_trail(tmp_path, key=key, events=30)
    report = verify([tmp_path], key.public_key())
    assert report.ok
    assert report.signatures_checked
    assert report.signed_checkpoints == report.checkpoints > 0
    assert any("verified with key" in note for note in report.notes)
    unchecked = verify([tmp_path])
    assert unchecked.ok
    assert any("not checked" in note for note in unchecked.notes)


def test_the_verification_run_itself_is_recorded(tmp_path):
    clock = FakeClock()
    write_trail(tmp_path, events=5, clock=clock)
    with new_log(tmp_path, clock) as log:
        log.append([verification_record(verify([tmp_path]))])
    [run] = [r for r in all_records(tmp_path) if r["kind"] == "verification"]
    assert run["ok"] is True
    assert run["first_failure"] is None
    assert verify([tmp_path]).ok


def test_paths_must_exist_and_hold_audit_files(tmp_path):
    with pytest.raises(AuditPathError, match="no such file"):
        verify([tmp_path / "absent"])
    with pytest.raises(AuditPathError, match="no audit"):
        verify([tmp_path])
    files = write_trail(tmp_path / "trail", events=20)
    assert len(verify([files[0], tmp_path / "trail"]).files) == len(files)  # each file once


# -- each tamper, named exactly ------------------------------------------------------------------


@pytest.fixture
def trail(tmp_path) -> list[Path]:
    files = write_trail(tmp_path, events=40)
    assert len(files) >= 4
    return files


def test_editing_one_byte_of_a_record_is_edited_at_that_record(trail):
    target = trail[1]
    lines = lines_of(target)
    index = middle_event(target)
    record = decode(lines[index])
    at = lines[index].index(record["event_id"].encode()) + 4
    data = bytearray(target.read_bytes())
    offset = sum(len(line) for line in lines[:index]) + at
    data[offset] = ord("7") if data[offset] != ord("7") else ord("8")
    target.write_bytes(bytes(data))
    found = failure(verify([target.parent]))
    assert (found.reason, found.file, found.line, found.seq) == (
        EDITED,
        target.name,
        index + 1,
        record["seq"],
    )


def test_editing_a_seq_under_an_intact_link_is_edited(trail):
    target = trail[2]
    lines = lines_of(target)
    index = middle_event(target)
    record = decode(lines[index])
    lines[index] = encode(record | {"seq": record["seq"] + 1})
    target.write_bytes(b"".join(lines))
    found = failure(verify([target.parent]))
    assert (found.reason, found.line) == (EDITED, index + 1)


def test_editing_a_records_prev_is_edited_at_that_record_not_its_predecessor(trail):
    target = trail[1]
    lines = lines_of(target)
    index = middle_event(target)
    record = decode(lines[index])
    lines[index] = encode(record | {"prev": "f" * 64})
    target.write_bytes(b"".join(lines))
    found = failure(verify([target.parent]))
    assert (found.reason, found.line, found.seq) == (EDITED, index + 1, record["seq"])


def test_deleting_a_line_is_deleted_naming_the_missing_seq(trail):
    target = trail[1]
    lines = lines_of(target)
    index = middle_event(target)
    missing = decode(lines[index])["seq"]
    target.write_bytes(b"".join(lines[:index] + lines[index + 1 :]))
    report = verify([target.parent])
    found = failure(report)
    assert (found.reason, found.file, found.line, found.seq) == (
        DELETED,
        target.name,
        index + 1,
        missing,
    )
    assert status(report)[target.name] == INVALID


def test_swapping_two_adjacent_lines_is_reordered(trail):
    target = trail[2]
    lines = lines_of(target)
    index = middle_event(target)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    target.write_bytes(b"".join(lines))
    found = failure(verify([target.parent]))
    assert (found.reason, found.line, found.seq) == (
        REORDERED,
        index + 1,
        decode(lines[index])["seq"],
    )


@pytest.mark.parametrize("forgery", ["chained", "random prev", "replayed"])
def test_an_inserted_line_is_inserted_at_the_forged_line(trail, forgery):
    target = trail[1]
    lines = lines_of(target)
    index = middle_event(target)
    before = decode(lines[index])
    if forgery == "replayed":
        forged = lines[index - 1]
    else:
        prev = hashlib.sha256(lines[index][:-1]).hexdigest() if forgery == "chained" else "e" * 64
        forged = encode(
            records.event_record_from_body(body(999))
            | {
                "seq": before["seq"] + 1,
                "prev": prev,
                "logged_at": before["logged_at"],
                "audit_id": "forged",
            }
        )
    target.write_bytes(b"".join([*lines[: index + 1], forged, *lines[index + 1 :]]))
    found = failure(verify([target.parent]))
    assert (found.reason, found.file, found.line) == (INSERTED, target.name, index + 2)


def test_truncating_a_file_mid_line_is_truncated(trail):
    target = trail[1]
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    report = verify([target.parent])
    found = failure(report)
    assert (found.reason, found.file) == (TRUNCATED, target.name)
    assert found.line == data[: len(data) // 2].count(b"\n") + 1
    assert "cut off" in found.detail


def test_truncating_a_file_at_a_line_boundary_is_truncated_by_the_next_files_promise(trail):
    target = trail[1]
    lines = lines_of(target)
    target.write_bytes(b"".join(lines[:3]))
    found = failure(verify([target.parent]))
    assert (found.reason, found.file, found.line) == (TRUNCATED, target.name, 4)
    assert f"says it had {len(lines)}" in found.detail


def test_cutting_the_last_line_is_truncated(trail):
    newest = trail[-1]
    newest.write_bytes(newest.read_bytes()[:-20])
    found = failure(verify([newest.parent]))
    assert (found.reason, found.file, found.line) == (TRUNCATED, newest.name, len(lines_of(newest)))


def test_replacing_a_file_with_another_chains_file_is_a_replaced_or_foreign_file(trail, tmp_path):
    other = write_trail(tmp_path / "other", events=40, first=1000)  # same names, other records
    assert [p.name for p in other] == [p.name for p in trail]
    shutil.copy(other[2], trail[2])
    report = verify([trail[0].parent])
    found = failure(report)
    assert (found.reason, found.file, found.line) == (REPLACED, trail[2].name, 1)
    assert found.detail.startswith("replaced or foreign file")
    assert status(report)[trail[2].name] == INVALID
    assert status(report)[trail[3].name] == VALID  # judged on its own, with a note
    assert any("not judged" in note for note in report.files[3].notes)


def test_a_removed_middle_file_is_a_gap_naming_it(trail):
    trail[1].unlink()
    report = verify([trail[0].parent])
    found = failure(report)
    assert (found.reason, found.file) == (MISSING, trail[2].name)
    assert trail[1].name in found.detail
    assert status(report)[trail[2].name] == GAP
    assert status(report)[trail[0].name] == VALID


def test_a_removed_newest_file_is_a_gap_after_the_rotation_that_promised_it(trail):
    trail[-1].unlink()
    report = verify([trail[0].parent])
    found = failure(report)
    assert (found.reason, found.file) == (MISSING, trail[-2].name)
    assert status(report)[trail[-2].name] == GAP


def test_verifying_part_of_a_trail_reports_the_files_before_it_missing(trail):
    report = verify(trail[2:])
    assert (failure(report).reason, failure(report).file) == (MISSING, trail[2].name)
    assert [f.status for f in report.files[1:]] == [VALID] * (len(trail) - 3)


def checkpoint_index(path: Path) -> int:
    return next(i for i, line in enumerate(lines_of(path)) if decode(line)["kind"] == "checkpoint")


def test_a_checkpoint_with_a_forged_record_count_is_a_bad_signature(trail):
    target = trail[1]
    lines = lines_of(target)
    index = checkpoint_index(target)
    record = decode(lines[index])
    lines[index] = encode(record | {"records": record["records"] - 1})
    target.write_bytes(b"".join(lines))
    found = failure(verify([target.parent]))
    assert (found.reason, found.file, found.line) == (BAD_SIGNATURE, target.name, index + 1)
    assert "forged checkpoint" in found.detail


def signed_trail(directory: Path, key: Ed25519PrivateKey) -> list[Path]:
    files = write_trail(directory, key=key, events=40)
    assert verify([directory], key.public_key()).ok
    return files


def test_a_signed_checkpoint_with_a_forged_record_count_does_not_verify(tmp_path, key):
    target = signed_trail(tmp_path, key)[1]
    lines = lines_of(target)
    index = checkpoint_index(target)
    record = decode(lines[index])
    lines[index] = encode(record | {"records": record["records"] + 1})
    target.write_bytes(b"".join(lines))
    found = failure(verify([tmp_path], key.public_key()))
    assert (found.reason, found.line) == (BAD_SIGNATURE, index + 1)
    assert "does not verify" in found.detail


def test_a_checkpoint_re_signed_with_another_key_is_a_bad_signature(tmp_path, key):
    target = signed_trail(tmp_path, key)[2]
    lines = lines_of(target)
    index = checkpoint_index(target)
    forger = Ed25519PrivateKey.generate()
    record = decode(lines[index]) | {"key_id": key_id(forger.public_key())}
    del record["signature"]
    record["signature"] = sign(forger, canonical(record))
    lines[index] = encode(record)
    target.write_bytes(b"".join(lines))
    found = failure(verify([tmp_path], key.public_key()))
    assert (found.reason, found.file, found.line) == (BAD_SIGNATURE, target.name, index + 1)
    assert "not by the given key" in found.detail


def test_a_forged_unsigned_checkpoint_in_a_signed_trail_is_unsigned(tmp_path, key):
    target = signed_trail(tmp_path, key)[1]
    lines = lines_of(target)
    index = checkpoint_index(target)
    lines[index] = encode(decode(lines[index]) | {"signature": None, "key_id": None})
    target.write_bytes(b"".join(lines))
    found = failure(verify([tmp_path], key.public_key()))
    assert (found.reason, found.line) == (UNSIGNED, index + 1)


def test_unsigned_checkpoints_are_invalid_when_a_public_key_is_given(trail, key):
    report = verify([trail[0].parent], key.public_key())
    found = failure(report)
    assert (found.reason, found.file) == (UNSIGNED, trail[0].name)
    assert "a public key was given" in found.detail


@pytest.mark.parametrize("tamper", ["delete", "swap"])
def test_every_deleted_or_swapped_line_is_named(tmp_path, tamper):
    """Every position of a small trail, not just the middle of a file."""
    source = write_trail(tmp_path / "source", events=12)
    expected = {"delete": {DELETED, TRUNCATED}, "swap": {REORDERED}}[tamper]
    for path in source:
        count = len(lines_of(path))
        for index in range(count - (tamper == "swap")):
            if tamper == "delete" and path == source[-1] and index == count - 1:
                continue  # the newest record of all has nothing after it to betray it
            work = tmp_path / f"{tamper}-{path.name}-{index}"
            crash_copy(tmp_path / "source", work)
            lines = lines_of(work / path.name)
            if tamper == "delete":
                del lines[index]
            else:
                lines[index], lines[index + 1] = lines[index + 1], lines[index]
            (work / path.name).write_bytes(b"".join(lines))
            found = failure(verify([work]))
            assert found.reason in expected, (path.name, index, found)
            assert (found.file, found.line) == (path.name, index + 1), (index, found)


@functools.cache
def signed_bytes() -> tuple[dict[str, bytes], Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as directory:
        files = write_trail(Path(directory), key=key, events=12)
        return {p.name: p.read_bytes() for p in files}, key


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_single_byte_edit_anywhere_is_detected(data):
    files, key = signed_bytes()
    name = data.draw(st.sampled_from(sorted(files)))
    content = bytearray(files[name])
    offset = data.draw(st.integers(0, len(content) - 1))
    content[offset] = data.draw(st.integers(0, 255).filter(lambda b: b != content[offset]))
    with tempfile.TemporaryDirectory() as directory:
        for other, raw in files.items():
            (Path(directory) / other).write_bytes(bytes(content) if other == name else raw)
        report = verify([directory], key.public_key())
    assert not report.ok
    assert report.first_failure is not None
    assert report.first_failure.file == name


# -- the audit against the journal ---------------------------------------------------------------


def journal_with(path: Path, bodies: list[bytes]) -> Path:
    writer = JournalWriter(path, flush_interval=0.0, on_commit=lambda result: None)
    writer.submit(WriteBatch(events=bodies))
    writer.close()
    return path


def audit_of(directory: Path, bodies: list[bytes]) -> Path:
    with new_log(directory, FakeClock()) as log:
        log.append([records.event_record_from_body(b) for b in bodies])
    return directory


def test_every_journaled_event_has_its_audit_record_and_vice_versa(tmp_path):
    bodies = [body(n) for n in range(30)]
    journal = journal_with(tmp_path / "journal.db", bodies)
    report = against_journal([audit_of(tmp_path / "audit", bodies)], journal)
    assert report.ok
    assert (report.journal_events, report.audit_events) == (30, 30)
    assert report.findings == []


def test_a_journal_event_without_an_audit_record_is_named(tmp_path):
    bodies = [body(n) for n in range(10)]
    journal = journal_with(tmp_path / "journal.db", bodies)
    report = against_journal([audit_of(tmp_path / "audit", bodies[:4] + bodies[5:])], journal)
    assert not report.ok
    assert [(f.reason, f.event_id) for f in report.findings] == [("NO_AUDIT_RECORD", "ev-000004")]


def test_an_audit_record_without_a_journal_event_is_named(tmp_path):
    bodies = [body(n) for n in range(10)]
    journal = journal_with(tmp_path / "journal.db", bodies[:9])
    report = against_journal([audit_of(tmp_path / "audit", bodies)], journal)
    assert [(f.reason, f.event_id) for f in report.findings] == [("NOT_IN_JOURNAL", "ev-000009")]
    assert report.findings[0].file is not None


def test_an_audit_record_whose_hash_is_not_the_journal_body_is_named(tmp_path):
    bodies = [body(n) for n in range(10)]
    journal = journal_with(tmp_path / "journal.db", bodies)
    audited = [*bodies[:3], body(300, event_id="ev-000003"), *bodies[4:]]
    report = against_journal([audit_of(tmp_path / "audit", audited)], journal)
    assert [(f.reason, f.event_id) for f in report.findings] == [("HASH_MISMATCH", "ev-000003")]
    assert report.counts["HASH_MISMATCH"] == 1


def test_an_event_audited_twice_is_named(tmp_path):
    bodies = [body(n) for n in range(5)]
    journal = journal_with(tmp_path / "journal.db", bodies)
    report = against_journal([audit_of(tmp_path / "audit", [*bodies, bodies[2]])], journal)
    assert [(f.reason, f.event_id) for f in report.findings] == [("DUPLICATE", "ev-000002")]


# -- keys ----------------------------------------------------------------------------------------


def test_keys_load_from_a_file_or_the_environment_and_verify_what_they_sign(tmp_path):
    private_pem, public_pem = generate_keypair()
    (tmp_path / "k.pem").write_bytes(private_pem)
    (tmp_path / "k.pub.pem").write_bytes(public_pem)
    from_file = load_private_key(tmp_path / "k.pem")
    from_env = load_private_key(environ={ENV_KEY: private_pem.decode()})
    assert from_file is not None
    assert from_env is not None
    public = load_public_key(tmp_path / "k.pub.pem")
    assert key_id(public) == key_id(from_file.public_key()) == key_id(from_env.public_key())
    assert key_id(load_public_key(tmp_path / "k.pem")) == key_id(public)
    assert load_private_key(environ={}) is None
    with pytest.raises(AuditKeyError, match=ENV_KEY):
        load_private_key(environ={ENV_KEY: "not a key"})
    (tmp_path / "rsa.pub.pem").write_bytes(
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(AuditKeyError):
        load_public_key(tmp_path / "rsa.pub.pem")


def test_keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites(tmp_path):
    private, public = write_keypair(tmp_path / "keys")
    assert private.stat().st_mode & 0o777 == 0o600
    assert load_private_key(private) is not None
    assert load_public_key(public) is not None
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "keys")


def test_renaming_the_newest_checkpoint_does_not_unseal_the_log():
    """Found by the byte-edit property: a one-byte edit of the last checkpoint's kind made it
    an ordinary (unsealed) record, and the log still verified."""
    files, key = signed_bytes()
    name = sorted(files)[-1]
    content = files[name].replace(b'"kind":"checkpoint"', b'"kind":" heckpoint"')
    assert content != files[name]
    with tempfile.TemporaryDirectory() as directory:
        for other, raw in files.items():
            (Path(directory) / other).write_bytes(content if other == name else raw)
        report = verify([directory], key.public_key())
    assert not report.ok
    assert report.first_failure is not None
    assert report.first_failure.reason == EDITED
    assert "unknown record kind" in report.first_failure.detail


def test_verify_reports_each_file_for_a_progress_bar():
    files, key = signed_bytes()
    seen: list[tuple[int, int, int]] = []
    with tempfile.TemporaryDirectory() as directory:
        for name, raw in files.items():
            (Path(directory) / name).write_bytes(raw)
        report = verify([directory], key.public_key(), on_file=lambda *a: seen.append(a))
    assert report.ok
    assert [(done, total) for done, total, _ in seen] == [
        (i, len(files)) for i in range(1, len(files) + 1)
    ]
    assert [size for _, _, size in seen] == [len(files[name]) for name in sorted(files)]
