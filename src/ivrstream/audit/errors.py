"""Errors the audit log raises, ordered by what the caller can do about them.

::

    AuditError                  the audit log cannot do what was asked
    ├── AuditWriteError         a write or fsync failed: appends stop; close() and open() again
    └── AuditRecoveryError      the newest file is damaged beyond a torn last line: verify it,
                                move the damaged file aside, then open()

Bad input from the caller (an unknown kind, a field the log assigns) is a ``ValueError``; a key
that cannot be loaded is :class:`ivrstream.audit.keys.AuditKeyError`; a path that cannot be
verified is :class:`ivrstream.audit.report.AuditPathError`.
"""

from __future__ import annotations


class AuditError(Exception):
    """The audit log cannot do what was asked; the message says why and what to do."""


class AuditWriteError(AuditError):
    """A write or fsync failed; reopen the log (it recovers from what reached the disk)."""


class AuditRecoveryError(AuditError):
    """The newest file is damaged beyond a torn last line: run ``ivrstream audit verify``."""
