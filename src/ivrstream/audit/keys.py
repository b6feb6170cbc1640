"""Ed25519 keys that sign audit checkpoints.

Rules this module keeps:

- The private key is PEM (PKCS#8, unencrypted) in a file the service reads, or the PEM text
  itself in ``IVRSTREAM_AUDIT_KEY``; a file given explicitly wins over the environment.
- ``keygen`` writes the private key 0600 and never overwrites an existing key: the old public
  key is what verifies every checkpoint signed so far.
- A checkpoint names the key that signed it (``key_id``: the first 16 hex digits of the SHA-256 of
  the raw public key) so a verifier can say "signed by another key" rather than just "bad".
- A signature is base64 Ed25519 over bytes the caller chooses (the canonical JSON of the
  checkpoint without its ``signature``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ENV_KEY = "IVRSTREAM_AUDIT_KEY"
PRIVATE_FILE = "audit-signing.pem"
PUBLIC_FILE = "audit-signing.pub.pem"


class AuditKeyError(ValueError):
    """A key file or variable that does not hold an Ed25519 key; the message says which."""


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as ``(private_pem, public_pem)``."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private_pem, public_pem(key.public_key())


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_keypair(directory: str | Path) -> tuple[Path, Path]:
    """Write ``audit-signing.pem`` (0600) and ``audit-signing.pub.pem`` into ``directory``;
    raises ``FileExistsError`` rather than replace either."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    private_path, public_path = out / PRIVATE_FILE, out / PUBLIC_FILE
    for path in (private_path, public_path):
        if path.exists():
            raise FileExistsError(f"{path} already exists; move it away first")
    private, public = generate_keypair()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private)
    public_path.write_bytes(public)
    return private_path, public_path


def load_private_key(
    path: str | Path | None = None, *, environ: Mapping[str, str] | None = None
) -> Ed25519PrivateKey | None:
    """The signing key from ``path``, else from ``IVRSTREAM_AUDIT_KEY`` (PEM text); ``None``
    when neither is set (checkpoints are then unsigned)."""
    if path is not None:
        data, where = Path(path).read_bytes(), str(path)
    else:
        text = (os.environ if environ is None else environ).get(ENV_KEY, "")
        if not text.strip():
            return None
        data, where = text.encode(), ENV_KEY
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{where}: not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{where}: not an Ed25519 key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    """The verifying key from a PEM file (a private key file works too)."""
    data = Path(path).read_bytes()
    if b"PRIVATE KEY" in data:
        private = load_private_key(path)
        assert private is not None
        return private.public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise AuditKeyError(f"{path}: not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError(f"{path}: not an Ed25519 key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")


def signature_valid(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
