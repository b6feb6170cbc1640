"""Logging that cannot leak secrets.

Every handler ivrstream installs carries :data:`REDACTOR`, which replaces each registered secret
(client secret, access tokens, JWT assertions, channel ids, webhook secrets) wherever it appears
in a formatted message or traceback. Register a secret the moment it is known.
"""

from __future__ import annotations

import logging
import sys
import threading

REDACTED = "[redacted]"


class SecretRedactor(logging.Filter):
    """A logging filter that removes registered secrets from records."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg = self.scrub(message)
            record.args = None
            if record.exc_text:
                record.exc_text = self.scrub(record.exc_text)
        return True


REDACTOR = SecretRedactor()


def register_secret(secret: str | None) -> None:
    REDACTOR.add(secret)


def setup(level: str = "INFO") -> None:
    """Log to stderr, one line per record, secrets scrubbed."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
    root = logging.getLogger("ivrstream")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
