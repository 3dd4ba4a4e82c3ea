"""S3 access keys per user.

SigV4 proves a request by an HMAC keyed with (a key derived from) the secret, so the
validator must have the secret itself to check one: it cannot be stored hashed. Secrets are
kept encrypted with AES-256-GCM under a 32-byte key in the validator's data dir
(``s3-secrets.key``, mode 0600), with the access key as associated data, so a copy of the
database alone reveals no secret and a row's secret cannot be moved to another key.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from validator.models import S3AccessKey, User

KEY_FILE = "s3-secrets.key"
_ALPHABET = string.ascii_uppercase + string.digits
NONCE = 12


class KeyFileError(Exception):
    """A key file or user that is not as it must be."""


@dataclass(frozen=True, slots=True)
class AccessKeyInfo:
    access_key: str
    user: str
    created_at: datetime
    revoked_at: datetime | None


def load_key_file(path: Path) -> bytes:
    """The secrets' key; made (0600, atomically) on first use."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) != 32:
            raise KeyFileError(f"{path} must hold 32 bytes, it holds {len(data)}") from None
        return data
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return key


class AccessKeys:
    def __init__(self, sessions: sessionmaker[Session], key_file: Path) -> None:
        self.sessions = sessions
        self._cipher = AESGCM(load_key_file(key_file))

    def create(self, user: str) -> tuple[str, str]:
        """A new (access key, secret) for ``user`` (made if unknown, as API tokens are)."""
        access_key = "SN" + "".join(secrets.choice(_ALPHABET) for _ in range(18))
        secret = secrets.token_urlsafe(30)
        nonce = secrets.token_bytes(NONCE)
        sealed = nonce + self._cipher.encrypt(nonce, secret.encode(), access_key.encode())
        now = datetime.now(UTC)
        with self.sessions.begin() as session:
            row = session.scalar(select(User).where(User.name == user))
            if row is None:
                row = User(name=user, created_at=now)
                session.add(row)
                session.flush()
            session.add(
                S3AccessKey(
                    access_key=access_key, user_id=row.id, sealed_secret=sealed, created_at=now
                )
            )
        return access_key, secret

    def list(self, user: str | None = None) -> list[AccessKeyInfo]:
        query = select(S3AccessKey, User.name).join(User, User.id == S3AccessKey.user_id)
        if user is not None:
            query = query.where(User.name == user)
        with self.sessions() as session:
            rows = session.execute(query.order_by(User.name, S3AccessKey.created_at)).all()
            return [
                AccessKeyInfo(k.access_key, name, k.created_at, k.revoked_at) for k, name in rows
            ]

    def revoke(self, access_key: str) -> bool:
        """False if there is no such key (or it was revoked already)."""
        with self.sessions.begin() as session:
            row = session.get(S3AccessKey, access_key)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = datetime.now(UTC)
            return True

    def secret(self, access_key: str) -> tuple[int, str] | None:
        """(user id, secret) of a live key, else None."""
        with self.sessions() as session:
            row = session.get(S3AccessKey, access_key)
            if row is None or row.revoked_at is not None:
                return None
            sealed, user_id = row.sealed_secret, row.user_id
        try:
            plain = self._cipher.decrypt(sealed[:NONCE], sealed[NONCE:], access_key.encode())
        except InvalidTag:
            raise KeyFileError(
                f"the secret of {access_key} does not open with this data dir's {KEY_FILE}"
            ) from None
        return user_id, plain.decode()
