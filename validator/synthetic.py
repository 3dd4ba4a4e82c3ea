"""Synthetic data: objects the validator makes from a secret seed to fill spare capacity.

Capacity a miner only claims earns nothing (weights follow verified bytes); capacity it
proves by holding data earns. So the validator fills ``share`` of the miners' capacity with
objects whose bytes are a ChaCha20 keystream under a secret seed: object ``i`` is the
keystream with nonce ``i``. They are stored like any object (unencrypted: the bytes are
already random), owned by an internal user nobody can sign as, and challenged like any
other shard. The validator needs only the seed and the roots to check them, and
:func:`regenerate_shard` rebuilds any shard from the seed alone.

The share is applied to the miners' total capacity; which miners hold the shards is
placement's usual choice (weighted by free space), so a miner with more free space gets
more of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from erasure import ErasureParams, encode_segment_shards
from validator.models import Miner, Placement, Segment, Shard, StoredObject, User
from validator.uploads import Uploader, UploadOptions

log = logging.getLogger(__name__)

SYNTHETIC_USER = "__synthetic__"
PREFIX = "synthetic/"
SEED_BYTES = 32
CHUNK = 1 << 20


def load_seed(path: Path) -> bytes:
    """The validator's secret seed, created (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(SEED_BYTES))
            out.flush()
            os.fsync(out.fileno())
    seed = path.read_bytes()
    if len(seed) != SEED_BYTES:
        raise ValueError(f"{path} must hold exactly {SEED_BYTES} bytes; move it aside to renew")
    return seed


def keystream(seed: bytes, index: int, start: int, size: int) -> bytes:
    """Bytes ``start..start+size`` of synthetic object ``index`` (start a multiple of 64)."""
    if start % 64:
        raise ValueError("synthetic reads start on a 64-byte ChaCha20 block")
    # cryptography's ChaCha20 nonce is a 4-byte block counter then a 12-byte nonce.
    nonce = (start // 64).to_bytes(4, "little") + index.to_bytes(12, "little")
    return Cipher(algorithms.ChaCha20(seed, nonce), mode=None).encryptor().update(bytes(size))


def chunks(seed: bytes, index: int, size: int) -> Iterator[bytes]:
    for start in range(0, size, CHUNK):
        yield keystream(seed, index, start, min(CHUNK, size - start))


def regenerate_shard(
    seed: bytes, index: int, size: int, params: ErasureParams, segment: int, share: int
) -> bytes:
    """Shard ``share`` of segment ``segment`` of synthetic object ``index``, from the seed."""
    start = segment * params.segment_size
    length = min(params.segment_size, size - start)
    plain = keystream(seed, index, start, length)
    last = start + length >= size
    coded = encode_segment_shards(params, segment, plain, last, None)
    return b"".join(bytes(piece) for piece in coded.shards[share].pieces)


class SyntheticFiller:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        uploader: Uploader,
        seed: bytes,
        *,
        share: float,
        object_size: int,
        params: ErasureParams,
    ) -> None:
        self.sessions = sessions
        self.uploader = uploader
        self.seed = seed
        self.share = share
        self.object_size = object_size
        self.params = params

    def _owner(self) -> int:
        with self.sessions.begin() as session:
            owner = session.scalar(select(User.id).where(User.name == SYNTHETIC_USER))
            if owner is None:
                row = User(name=SYNTHETIC_USER, created_at=datetime.now(UTC))
                session.add(row)
                session.flush()
                owner = row.id
            return owner

    def standing(self) -> tuple[int, int, int]:
        """(target bytes on miners, synthetic bytes on miners, next object index)."""
        with self.sessions() as session:
            capacity = session.scalar(
                select(func.coalesce(func.sum(Miner.capacity_bytes), 0)).where(Miner.active)
            )
            owner = session.scalar(select(User.id).where(User.name == SYNTHETIC_USER))
            stored = session.scalar(
                select(func.coalesce(func.sum(Shard.size), 0))
                .select_from(Placement)
                .join(Shard, Shard.id == Placement.shard_id)
                .join(Segment, Segment.id == Shard.segment_id)
                .join(StoredObject, StoredObject.id == Segment.object_id)
                .where(StoredObject.owner_id == owner, Placement.state == "stored")
            )
            count = session.scalar(
                select(func.count()).select_from(StoredObject).where(StoredObject.owner_id == owner)
            )
        return int(int(capacity or 0) * self.share), int(stored or 0), int(count or 0)

    async def fill_once(self) -> bool:
        """Store one more synthetic object if the miners have room for it under the share."""
        target, stored, index = await asyncio.to_thread(self.standing)
        expansion = self.params.m / self.params.k
        if self.share <= 0 or stored + self.object_size * expansion > target:
            return False
        owner = await asyncio.to_thread(self._owner)
        name = f"{PREFIX}{index:08d}"
        options = UploadOptions(self.params, encrypt=False, declared_size=self.object_size)
        await self.uploader.upload(owner, name, self._body(index), options)
        log.info("synthetic object stored", extra={"object": name, "bytes": self.object_size})
        return True

    async def _body(self, index: int) -> AsyncIterator[bytes]:
        for start in range(0, self.object_size, CHUNK):
            size = min(CHUNK, self.object_size - start)
            yield await asyncio.to_thread(keystream, self.seed, index, start, size)
