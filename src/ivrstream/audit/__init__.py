"""The compliance audit trail: append-only JSON lines that nobody can quietly edit.

Rules this package keeps:

- One record per journaled event (its id, type, sequence id, time, receive latency and the
  SHA-256 of the canonical event) and one per operational fact an auditor asks for (service
  start/stop, configuration hash, connections, authentication failures, subscriptions, gaps,
  dead letters, DLQ retries and purges, verification runs). Never a secret.
- Each record carries ``prev``, the SHA-256 of the previous record's canonical line, across files
  and restarts; checkpoints (hourly, at rotation, at close) seal the chain and, with a key, are
  signed with Ed25519 and chained to each other by ``prev_signature``.
- ``verify`` walks every file and checkpoint and names the first bad record of each file and
  why; ``against_journal`` checks that the audit and the journal record the same events.

Modules: :mod:`.records` (format, builders), :mod:`.writer` (:class:`AuditLog`) and
:mod:`.recovery` (where a reopened log continues), :mod:`.errors`,
:mod:`.verify` (reasons and reports in :mod:`.report`), :mod:`.journal_check`, :mod:`.keys`.

The service::

    log = AuditLog(directory, clock, signing_key=load_private_key(key_path)).open()
    log.append([records.service_start(version)])
    log.append([records.event_record_from_body(body) for body in committed])  # per batch
    log.tick()                      # once a second: fsync, hourly checkpoint, day rotation
    log.append([records.service_stop("SIGTERM")]); log.close()
"""

from ivrstream.audit import records
from ivrstream.audit.errors import AuditError, AuditRecoveryError, AuditWriteError
from ivrstream.audit.journal_check import JournalFinding, JournalReport, against_journal
from ivrstream.audit.keys import (
    AuditKeyError,
    generate_keypair,
    load_private_key,
    load_public_key,
    write_keypair,
)
from ivrstream.audit.records import event_record, event_record_from_body, operational
from ivrstream.audit.report import (
    AuditPathError,
    FileReport,
    Finding,
    Report,
    verification_record,
)
from ivrstream.audit.verify import verify
from ivrstream.audit.writer import AuditLog, AuditStats

__all__ = [
    "AuditError",
    "AuditKeyError",
    "AuditLog",
    "AuditPathError",
    "AuditRecoveryError",
    "AuditStats",
    "AuditWriteError",
    "FileReport",
    "Finding",
    "JournalFinding",
    "JournalReport",
    "Report",
    "against_journal",
    "event_record",
    "event_record_from_body",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "operational",
    "records",
    "verification_record",
    "verify",
    "write_keypair",
]
