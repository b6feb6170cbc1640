"""Standard Webhooks signatures (https://www.standardwebhooks.com): sign and verify, nothing else.

Rules this module keeps:

- Pure functions: no I/O, no clock, no randomness. The caller passes ``timestamp`` and ``now``
  (Unix seconds) in.
- A secret is ``whsec_<base64 key>`` or the bare base64 key; the HMAC key is the decoded bytes.
- The signed content is ``"{webhook-id}.{webhook-timestamp}.{body}"`` over the body's exact bytes;
  the signature is ``v1,<base64 HMAC-SHA256>``. A ``webhook-signature`` header may carry several
  space-separated signatures (key rotation); verification passes if any ``v1`` one matches.
- Comparison is constant-time (:func:`hmac.compare_digest`). A timestamp further than
  ``tolerance`` seconds from ``now``, in either direction, is refused (replay protection).
- No secret, key or expected signature ever appears in an error message.

Errors, all :class:`WebhookVerificationError` (the peer sent something we refuse)::

    WebhookVerificationError    .code names the reason, str() says it in words
    ├── MissingHeader           "missing_header": webhook-id, -timestamp or -signature absent
    ├── BadTimestamp            "bad_timestamp": webhook-timestamp is not integer seconds
    ├── TimestampTooOld         "too_old": older than the tolerance (a replay, or a slow retry)
    ├── TimestampTooNew         "too_new": ahead of the tolerance (a clock far off)
    └── NoMatchingSignature     "no_match": no v1 signature matches this secret and body
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from ivrstream.errors import IvrstreamError

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


class WebhookVerificationError(IvrstreamError):
    """A delivery failed verification; ``code`` is a short machine-readable reason."""

    code = "invalid"


class MissingHeader(WebhookVerificationError):
    code = "missing_header"

    def __init__(self, header: str) -> None:
        super().__init__(f"missing {header} header")
        self.header = header


class BadTimestamp(WebhookVerificationError):
    code = "bad_timestamp"


class TimestampTooOld(WebhookVerificationError):
    code = "too_old"


class TimestampTooNew(WebhookVerificationError):
    code = "too_new"


class NoMatchingSignature(WebhookVerificationError):
    code = "no_match"


def parse_secret(text: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret (or a bare base64 key); ValueError if it is not one.

    The message never repeats the text, since the text is the secret.
    """
    body = text.strip()
    if body.startswith(SECRET_PREFIX):
        body = body[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not a Standard Webhooks secret: expected 'whsec_' followed by base64"
        ) from None
    if not key:
        raise ValueError("not a Standard Webhooks secret: the key is empty")
    return key


def _key(secret: bytes | str) -> bytes:
    return parse_secret(secret) if isinstance(secret, str) else secret


def _body(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def signature(secret: bytes | str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """One ``v1,<base64>`` signature; ``secret`` is a key (bytes) or secret text (``whsec_…``)."""
    mac = hmac.new(_key(secret), b"%s.%d." % (msg_id.encode(), int(timestamp)), hashlib.sha256)
    mac.update(_body(body))  # no copy of the body; a long one is hashed without the GIL
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac.digest()).decode()}"


def sign(secret: bytes | str, msg_id: str, timestamp: int, body: bytes | str) -> dict[str, str]:
    """The three headers to send with ``body``; send the body bytes exactly as signed."""
    return {
        ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(int(timestamp)),
        SIGNATURE_HEADER: signature(secret, msg_id, timestamp, body),
    }


def verify(
    secret: bytes | str,
    headers: Mapping[str, str],
    body: bytes | str,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Return if ``body`` was signed with ``secret`` within ``tolerance`` seconds of ``now``.

    Header names are matched case-insensitively. Raises a :class:`WebhookVerificationError`
    subclass naming the first reason found; answer the sender 401 and do not process the body.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    values: dict[str, str] = {}
    for header in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        value = lowered.get(header, "").strip()
        if not value:
            raise MissingHeader(header)
        values[header] = value
    text = values[TIMESTAMP_HEADER]
    if not (text.isascii() and text.isdigit()):
        raise BadTimestamp("webhook-timestamp is not integer Unix seconds")
    timestamp = int(text)
    if timestamp < now - tolerance:
        raise TimestampTooOld(f"webhook-timestamp is more than {tolerance:g} s old")
    if timestamp > now + tolerance:
        raise TimestampTooNew(f"webhook-timestamp is more than {tolerance:g} s in the future")
    expected = signature(secret, values[ID_HEADER], timestamp, body).encode()
    for candidate in values[SIGNATURE_HEADER].split():
        version, _, _ = candidate.partition(",")
        # compare bytes: compare_digest refuses non-ASCII str, and the header is the peer's
        if version == SIGNATURE_VERSION and hmac.compare_digest(
            candidate.encode("utf-8", "replace"), expected
        ):
            return
    raise NoMatchingSignature("no v1 signature matches")


def batch_id(event_ids: list[str]) -> str:
    """A ``webhook-id`` for a body carrying several events: the same ids give the same id.

    So a retried batch carries the same ``webhook-id`` and a receiver can deduplicate it. Each id
    is length-prefixed before hashing, so no choice of ids can collide by concatenation.
    """
    if not event_ids:
        raise ValueError("a batch needs at least one event id")
    encoded = list(map(str.encode, event_ids))
    parts: list[bytes] = [b""] * (2 * len(encoded))  # "<len>:", id, "<len>:", id, …
    parts[0::2] = map(b"%d:".__mod__, map(len, encoded))
    parts[1::2] = encoded
    return "batch_" + hashlib.sha256(b"".join(parts)).hexdigest()[:32]
