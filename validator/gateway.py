"""The gateway's behaviour, independent of HTTP: users, miners, objects.

Owns the user and miner directories (kept in the database), enforces that a user sees only
their own objects, and hands uploads and downloads to :mod:`validator.uploads` and
:mod:`validator.downloads`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from protocol.epistula import SHA256_PREFIX
from validator import verified
from validator.budget import TransferBudget
from validator.downloads import Downloader
from validator.miner_client import MinerAddress, MinerClient
from validator.models import Miner, Placement, Segment, Shard, StoredObject, User
from validator.object_health import ObjectHealth, objects_health
from validator.placement import Candidate, credible_free
from validator.scoring import Reputation
from validator.settings import parse_miner, parse_user
from validator.uploads import Uploader

log = logging.getLogger(__name__)


class NotYours(Exception):
    pass


class NoSuchObject(Exception):
    pass


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    id: str
    name: str
    size: int
    state: str
    encrypted: bool
    codec: str
    key_stored: bool
    created_at: str
    sealed_by: str  # none | validator | client (the validator cannot read client-sealed)
    # "<algorithm>:<hex>" of the body as uploaded (ciphertext when the client sealed), and
    # its hex alone when the algorithm is sha256 (what clients before BLAKE3 compare)
    content_hash: str | None
    content_sha256: str | None
    verifier: str | None  # the manifest's verifier hash (hex), as in the capability
    k: int
    m: int
    segment_size: int
    mode: str | None  # the uploaded file's permission bits in octal ("644"); None: unknown


DEFAULT_UNPROVEN_BYTES = 64 * 2**30
USER_PREFIX = "user:"  # how a token caller is named where a hotkey would be


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Gateway:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        miners: MinerClient,
        *,
        network_prefix: int = 0,
        unproven_bytes: int = DEFAULT_UNPROVEN_BYTES,
        upload_slots_per_user: int = 1,
        budget: TransferBudget | None = None,
    ) -> None:
        self.sessions = sessions
        self.miners = miners
        self.unproven_bytes = unproven_bytes
        self._candidates: list[Candidate] = []
        self.uploader = Uploader(
            sessions,
            miners,
            self.candidates,
            network_prefix=network_prefix,
            slots_per_user=upload_slots_per_user,
            budget=budget,
        )
        self.downloader = Downloader(sessions, miners, budget=budget)

    # --- directories -----------------------------------------------------------------

    def sync_users(self, entries: Sequence[str]) -> None:
        with self.sessions.begin() as session:
            for name, hotkey in map(parse_user, entries):
                row = session.scalar(select(User).where(User.name == name))
                if row is None:
                    session.add(User(name=name, hotkey=hotkey, created_at=datetime.now(UTC)))
                else:
                    row.hotkey = hotkey

    def user_hotkeys(self) -> frozenset[str]:
        with self.sessions() as session:
            return frozenset(h for h in session.scalars(select(User.hotkey)) if h)

    def user_id(self, identity: str) -> int:
        """The user behind a signing hotkey, or behind ``user:<name>`` (token callers)."""
        with self.sessions() as session:
            if identity.startswith(USER_PREFIX):
                name = identity.removeprefix(USER_PREFIX)
                uid = session.scalar(select(User.id).where(User.name == name))
            else:
                uid = session.scalar(select(User.id).where(User.hotkey == identity))
        if uid is None:
            raise NotYours(f"{identity} is not a user of this validator")
        return uid

    def user_name(self, user_id: int) -> str:
        """The name the settings give a user (``alice`` of ``--users alice=5G...``), for logs."""
        with self.sessions() as session:
            return session.scalar(select(User.name).where(User.id == user_id)) or f"#{user_id}"

    def sync_tokens(self, entries: Sequence[str]) -> None:
        """``name=token`` entries give users API tokens; only the tokens' hashes are kept."""
        with self.sessions.begin() as session:
            for name, token in map(parse_user, entries):
                row = session.scalar(select(User).where(User.name == name))
                if row is None:
                    row = User(name=name, created_at=datetime.now(UTC))
                    session.add(row)
                row.token_hash = token_hash(token)

    def token_user(self, token: str) -> str | None:
        """``user:<name>`` for a valid API token, else None."""
        with self.sessions() as session:
            name = session.scalar(select(User.name).where(User.token_hash == token_hash(token)))
        return None if name is None else USER_PREFIX + name

    def sync_miners(self, entries: Sequence[str]) -> None:
        with self.sessions.begin() as session:
            for hotkey, host, port in map(parse_miner, entries):
                row = session.scalar(select(Miner).where(Miner.hotkey == hotkey))
                if row is None:
                    session.add(Miner(hotkey=hotkey, host=host, port=port))
                else:
                    row.host, row.port = host, port

    def upsert_chain_miners(self, miners: Sequence[tuple[str, str, int, int]]) -> None:
        """(hotkey, host, port, uid) from the metagraph. A miner that left the metagraph is
        no longer placed on (its shards are challenged and repaired like any other)."""
        listed = {hotkey for hotkey, *_ in miners}
        with self.sessions.begin() as session:
            rows = {m.hotkey: m for m in session.scalars(select(Miner))}
            for hotkey, host, port, uid in miners:
                row = rows.get(hotkey)
                if row is None:
                    session.add(Miner(hotkey=hotkey, host=host, port=port, uid=uid))
                else:
                    row.host, row.port, row.uid = host, port, uid
                    row.deregistered_at = None
            for hotkey, row in rows.items():
                if row.uid is not None and hotkey not in listed:
                    row.uid = None
                    row.active = False
                    row.deregistered_at = datetime.now(UTC)

    async def refresh_miners(self) -> None:
        """Ask every miner for its free space; the candidates for placement and repair are
        those that answered and are neither disqualified nor suspended, each weighed by the
        free space it claims only up to what it has proven (``credible_free``)."""
        with self.sessions() as session:
            # In id order: each row is written as it is read (autoflush), and every writer
            # of miners' rows takes them in id order (verified.hold), so none waits crosswise.
            rows = [
                (m.id, MinerAddress(m.hotkey, m.host, m.port))
                for m in session.scalars(select(Miner).order_by(Miner.id))
            ]
        infos = await asyncio.gather(
            *(self.miners.info(address) for _, address in rows), return_exceptions=True
        )
        seen = datetime.now(UTC)

        def record() -> list[Candidate]:
            candidates = []
            with self.sessions.begin() as session:
                for (miner_id, address), info in zip(rows, infos, strict=True):
                    miner = session.get(Miner, miner_id)
                    if miner is None:
                        continue
                    if isinstance(info, BaseException):
                        miner.active = False
                        continue
                    miner.active = True
                    miner.free_bytes = int(info.get("free", 0))
                    miner.capacity_bytes = int(info.get("capacity", 0))
                    miner.last_seen = seen
                    if miner.disqualified_at is not None or miner.suspended_at is not None:
                        continue  # seen, but trusted with nothing
                    reputation = Reputation(miner.wrong_alpha, miner.wrong_beta).score
                    free = credible_free(
                        miner.free_bytes, miner.verified_bytes, self.unproven_bytes
                    )
                    candidates.append(
                        Candidate(address.hotkey, address.host, address.port, free, reputation)
                    )
            return candidates

        self._candidates = await asyncio.to_thread(record)

    def candidates(self) -> list[Candidate]:
        return list(self._candidates)

    # --- objects ---------------------------------------------------------------------

    def _owned(self, session: Session, owner_id: int, object_id: str) -> StoredObject:
        row = session.get(StoredObject, object_id)
        if row is None or row.state != "committed":
            raise NoSuchObject(object_id)
        if row.owner_id != owner_id:
            raise NotYours(f"object {object_id} belongs to another user")
        return row

    def list_objects(self, owner_id: int) -> list[ObjectInfo]:
        with self.sessions() as session:
            rows = session.scalars(
                select(StoredObject)
                .where(StoredObject.owner_id == owner_id, StoredObject.state == "committed")
                .order_by(StoredObject.name)
            )
            return [_info(row) for row in rows]

    def find(self, owner_id: int, ref: str) -> ObjectInfo:
        """An object by id, or by name."""
        with self.sessions() as session:
            row = session.get(StoredObject, ref)
            if row is None:
                row = session.scalar(
                    select(StoredObject).where(
                        StoredObject.owner_id == owner_id, StoredObject.name == ref
                    )
                )
            if row is None or row.state != "committed":
                raise NoSuchObject(ref)
            return _info(self._owned(session, owner_id, row.id))

    def health(
        self, owner_id: int, ref: str | None, unseen_after: float, prefix: str = ""
    ) -> list[ObjectHealth]:
        """The health of one of the owner's objects (by id or name), or of all of them whose
        names start with ``prefix``."""
        with self.sessions() as session:
            if ref is None:
                rows = [
                    row
                    for row in session.scalars(
                        select(StoredObject)
                        .where(StoredObject.owner_id == owner_id, StoredObject.state == "committed")
                        .order_by(StoredObject.name)
                    )
                    if row.name.startswith(prefix)  # before the health, which costs more
                ]
            else:
                rows = [self._owned(session, owner_id, self.find(owner_id, ref).id)]
            return objects_health(session, rows, unseen_after)

    def find_shared(self, verifier: str) -> ObjectInfo:
        """A committed object by its capability's verifier, whoever owns it: a capability
        can be shared, and holding it is what grants the read."""
        with self.sessions() as session:
            row = session.scalar(
                select(StoredObject)
                .where(StoredObject.verifier == verifier, StoredObject.state == "committed")
                .order_by(StoredObject.committed_at)
                .limit(1)
            )
            if row is None:
                raise NoSuchObject(f"with verifier {verifier}")
            return _info(row)

    async def delete(self, owner_id: int, object_id: str) -> int:
        """Remove the object, then ask its miners to drop the shards; returns shards asked."""

        def remove() -> list[tuple[MinerAddress, str]]:
            with self.sessions.begin() as session:
                row = self._owned(session, owner_id, object_id)
                held = session.execute(
                    select(Miner.id, Miner.hotkey, Miner.host, Miner.port, Shard.shard_id)
                    .join(Placement, Placement.miner_id == Miner.id)
                    .join(Shard, Shard.id == Placement.shard_id)
                    .join(Segment, Segment.id == Shard.segment_id)
                    .where(Segment.object_id == object_id)
                ).all()
                # The placements go by cascade; the database's triggers take what they
                # counted off their miners' verified bytes (validator/verified.py).
                verified.hold(session, {m for m, *_ in held})
                session.delete(row)
                return [(MinerAddress(h, host, port), sid) for _, h, host, port, sid in held]

        held = await asyncio.to_thread(remove)
        results = await asyncio.gather(
            *(self.miners.delete_shard(a, sid) for a, sid in held), return_exceptions=True
        )
        failures = sum(isinstance(r, Exception) for r in results)
        if failures:
            log.warning("some miners did not confirm a delete", extra={"count": failures})
        return len(held)


def _sha256_of(content_hash: str | None) -> str | None:
    if content_hash is None or not content_hash.startswith(SHA256_PREFIX):
        return None
    return content_hash.removeprefix(SHA256_PREFIX)


def _info(row: StoredObject) -> ObjectInfo:
    return ObjectInfo(
        id=row.id,
        name=row.name,
        size=row.size,
        state=row.state,
        encrypted=row.encryption != "none",
        codec=row.codec,
        key_stored=row.key is not None,
        created_at=row.created_at.isoformat(),
        sealed_by=sealed_by(row),
        content_hash=row.content_hash,
        content_sha256=_sha256_of(row.content_hash),
        verifier=row.verifier,
        k=row.k,
        m=row.m,
        segment_size=row.segment_size,
        mode=None if row.mode is None else f"{row.mode:o}",
    )


def sealed_by(row: StoredObject) -> str:
    """Rows from before migration 0006 were sealed by the validator, or not at all."""
    return row.sealed_by or ("none" if row.encryption == "none" else "validator")
