"""The user's capabilities, on the user's machine: the only copy of each object's key.

One file per validator, ``<folder>/<validator hotkey>.json`` (default folder
``~/.subnet/capabilities``, mode 0600). Losing it loses every object it holds a key for:
back it up. Format, versioned::

    {"version": 2,
     "objects": {object id: {"name", "capability", "content_hash"}},
     "names":   {name: object id of its newest version},
     "pending": {attempt id: {"name", "key", "content_hash", "size", "segment_size",
                              "started"}}}

An upload the client seals writes its key as a ``pending`` attempt *before* the first byte
leaves, and makes it a capability once the validator has committed; if the reply is lost, a
re-run finds the committed object by name and ``content_hash`` (``"blake3:<hex>"`` of the
ciphertext, which the validator lists) and completes it. Entries written before hashes
named their algorithm hold a hex ``sha256`` instead, read as ``"sha256:<hex>"``. Every
change is one atomic, fsynced rename under an exclusive lock, so two uploads (threads or
processes) never lose each other's entries.
Version 1 (a flat ``{id or "name:N": capability}``) is read and rewritten as version 2.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

STORE_VERSION = 2
DEFAULT_CAPS = Path("~/.subnet/capabilities").expanduser()
T = TypeVar("T")


class StoreError(Exception):
    """The capability file cannot be read; it is never overwritten then."""


@dataclass(frozen=True, slots=True)
class PendingUpload:
    attempt: str
    name: str
    key: bytes
    content_hash: str  # of the sealed stream sent, "<algorithm>:<hex>" ("" until it is all sent)
    size: int
    segment_size: int


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def _pending_hash(pending: dict[str, Any]) -> str:
    """A pending attempt's content hash; an entry from before hashes named their algorithm
    holds a hex sha256."""
    if "content_hash" in pending:
        return str(pending["content_hash"])
    sha256 = pending.get("sha256")
    return f"sha256:{sha256}" if sha256 else ""


def _empty() -> dict[str, Any]:
    return {"version": STORE_VERSION, "objects": {}, "names": {}, "pending": {}}


def _upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """A version 1 file: ``{object id: capability, "name:N": capability}``."""
    data = _empty()
    ids = {k: str(v) for k, v in raw.items() if not k.startswith("name:")}
    for object_id, capability in ids.items():
        data["objects"][object_id] = {"name": None, "capability": capability}
    by_capability = {capability: object_id for object_id, capability in ids.items()}
    for key, value in raw.items():
        owner = by_capability.get(str(value))
        if key.startswith("name:") and owner is not None:
            data["objects"][owner]["name"] = key[5:]
            data["names"][key[5:]] = owner
    return data


class CapabilityStore:
    def __init__(self, folder: Path, validator: str) -> None:
        self.path = folder / f"{validator}.json"
        self._lock_path = folder / f".{validator}.lock"

    # --- reading and writing, always whole and under the lock ---------------------------

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return _empty()
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"cannot read {self.path}: {exc}; restore it from your backup"
            ) from None
        if not isinstance(raw, dict):
            raise StoreError(f"{self.path} is not a capability store")
        if "version" not in raw:
            return _upgrade(raw)
        if raw["version"] != STORE_VERSION:
            raise StoreError(
                f"{self.path} is version {raw['version']!r}; this client reads {STORE_VERSION}"
            )
        return raw

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".caps-")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            Path(tmp).replace(self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a power cut
        finally:
            os.close(folder)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _change(self, change: Callable[[dict[str, Any]], T]) -> T:
        with self._locked():
            data = self._read()
            result = change(data)
            self._write(data)
            return result

    def load(self) -> dict[str, Any]:
        with self._locked():
            return self._read()

    # --- what uploads and downloads ask --------------------------------------------------

    def begin(self, name: str, key: bytes, content_hash: str, size: int, segment_size: int) -> str:
        """Record a key before its upload sends anything; returns the attempt's id."""
        attempt = uuid.uuid4().hex

        def add(data: dict[str, Any]) -> None:
            data["pending"][attempt] = {
                "name": name, "key": _b32(key), "content_hash": content_hash, "size": size,
                "segment_size": segment_size, "started": datetime.now(UTC).isoformat(),
            }  # fmt: skip

        self._change(add)
        return attempt

    def record_hash(self, attempt: str, content_hash: str) -> None:
        """The attempt's body is all sent but its trailer: keep the hash that names it, so
        that a re-run recognises the object if the reply is lost."""

        def record(data: dict[str, Any]) -> None:
            if attempt in data["pending"]:
                data["pending"][attempt]["content_hash"] = content_hash

        self._change(record)

    def complete(
        self, object_id: str, name: str, capability: str, content_hash: str | None,
        attempt: str | None = None,
    ) -> None:  # fmt: skip
        """The validator committed ``object_id``: keep its capability. Every pending attempt
        for the name goes: none of them can commit while this object holds the name."""

        def done(data: dict[str, Any]) -> None:
            data["objects"][object_id] = {
                "name": name, "capability": capability, "content_hash": content_hash
            }  # fmt: skip
            data["names"][name] = object_id
            stale = [a for a, p in data["pending"].items() if p["name"] == name]
            for key in {*stale, *([attempt] if attempt else [])}:
                data["pending"].pop(key, None)

        self._change(done)

    def discard(self, attempt: str) -> None:
        """The validator refused the attempt (it said so): nothing of it was committed."""
        self._change(lambda data: data["pending"].pop(attempt, None))

    def forget(self, object_id: str) -> None:
        def drop(data: dict[str, Any]) -> None:
            entry = data["objects"].pop(object_id, None)
            if entry and data["names"].get(entry["name"]) == object_id:
                del data["names"][entry["name"]]

        self._change(drop)

    def pending(self, name: str | None = None) -> list[PendingUpload]:
        return [
            PendingUpload(
                attempt,
                p["name"],
                _unb32(p["key"]),
                _pending_hash(p),
                p["size"],
                p["segment_size"],
            )
            for attempt, p in self.load()["pending"].items()
            if name is None or p["name"] == name
        ]

    def entry(self, object_id: str) -> dict[str, Any] | None:
        found = self.load()["objects"].get(object_id)
        return dict(found) if found else None

    def find(self, ref: str) -> str | None:
        """The capability of an object, by id or name."""
        data = self.load()
        entry = data["objects"].get(ref) or data["objects"].get(data["names"].get(ref, ""))
        return str(entry["capability"]) if entry else None
