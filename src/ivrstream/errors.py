"""Errors ivrstream raises, ordered by what the caller can do about them.

::

    IvrstreamError
    ├── ConfigError                 fix the configuration (exit 2); the message names the field
    ├── AuthError                   fix the credentials or the OAuth client, then restart
    │   ├── InvalidClient           401: wrong id/secret, wrong region, or the client was deleted
    │   ├── MissingScope            403: the client lacks a scope or permission (named)
    │   └── InvalidGrant            the JWT assertion was refused (key, issuer, audience, clock)
    ├── SubscriptionRejected        fix the subscription (4003 or local validation); not retried
    ├── GiveUp                      a retry budget ran out (max reconnects, auth retries)
    └── TransientError              the caller may retry later (the library already retried)
        ├── RateLimited             429 with Retry-After longer than we were willing to wait
        └── ServiceUnavailable      5xx or network failure

"We broke the protocol" (a bug in ivrstream) is an ordinary exception, never one of these.
"""

from __future__ import annotations


class IvrstreamError(Exception):
    """Base class for every error ivrstream raises on purpose."""


class ConfigError(IvrstreamError):
    """The configuration is wrong; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AuthError(IvrstreamError):
    """Authentication failed in a way retrying will not fix."""


class InvalidClient(AuthError):
    pass


class MissingScope(AuthError):
    pass


class InvalidGrant(AuthError):
    pass


class SubscriptionRejected(IvrstreamError):
    """The server (4003) or our own validation refused the subscription payload."""


class GiveUp(IvrstreamError):
    """A configured retry budget ran out."""


class TransientError(IvrstreamError):
    """Worth retrying later."""


class RateLimited(TransientError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailable(TransientError):
    pass
