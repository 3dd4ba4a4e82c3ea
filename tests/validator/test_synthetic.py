"""Synthetic data fills the share of capacity it is given, and is rebuilt from the seed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from erasure import ErasureParams, MerkleTree
from tests.validator.conftest import LiveMiner
from tests.validator.test_challenger import challenger
from validator.miner_client import MinerClient
from validator.models import Miner, Segment, Shard, StoredObject, User
from validator.synthetic import (
    SYNTHETIC_USER,
    SyntheticFiller,
    keystream,
    load_seed,
    regenerate_shard,
)
from validator.uploads import Uploader

PARAMS = ErasureParams(k=4, m=8, segment_size=256 * 1024, leaf_size=4096)
OBJECT = 300_000  # two segments, the second short


def test_the_seed_is_secret_stable_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "v" / "synthetic.seed"
    seed = load_seed(path)
    assert load_seed(path) == seed
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        load_seed(path)


def test_the_keystream_is_seekable_and_differs_per_object() -> None:
    seed = bytes(range(32))
    whole = keystream(seed, 7, 0, 4096)
    assert keystream(seed, 7, 1024, 1024) == whole[1024:2048]
    assert keystream(seed, 8, 0, 4096) != whole
    assert keystream(bytes(32), 7, 0, 4096) != whole
    with pytest.raises(ValueError, match="64-byte"):
        keystream(seed, 7, 10, 10)


async def test_the_filler_stops_at_its_share_and_shards_regenerate(
    sessions: sessionmaker[Session],
    miner_client: MinerClient,
    live_miners: list[LiveMiner],
    seeded: int,
) -> None:
    # An object puts m/k = 2x its size on the miners: 600 kB. 10% of 8 x 1.875 MB = 1.5 MB
    # holds two of them, not three.
    with sessions.begin() as session:
        session.execute(update(Miner).values(capacity_bytes=1_875_000))
    seed = bytes(range(32))
    uploader = Uploader(
        sessions, miner_client, lambda: [m.candidate for m in live_miners], rng=random.Random(3)
    )
    filler = SyntheticFiller(sessions, uploader, seed, share=0.1, object_size=OBJECT, params=PARAMS)
    assert [await filler.fill_once() for _ in range(3)] == [True, True, False]
    target, stored, count = filler.standing()
    assert count == 2
    assert stored <= target
    with sessions() as session:
        owner = session.scalar(select(User).where(User.name == SYNTHETIC_USER))
        assert owner is not None
        assert (owner.hotkey, owner.token_hash) == (None, None)  # nobody can sign as it
        rows = session.execute(
            select(StoredObject.name, Segment.index, Shard.share, Shard.shard_id)
            .join(Segment, Segment.object_id == StoredObject.id)
            .join(Shard, Shard.segment_id == Segment.id)
            .where(StoredObject.owner_id == owner.id)
        ).all()
    assert len(rows) == 2 * 2 * 8
    for name, segment, share, shard_id in random.Random(4).sample(rows, 6):
        index = int(name.removeprefix("synthetic/"))
        data = regenerate_shard(seed, index, OBJECT, PARAMS, segment, share)
        assert MerkleTree.build(data, PARAMS.leaf_size).root.hex() == shard_id
    # They are challenged like any shard, and count as verified bytes.
    report = await challenger(sessions, miner_client).run_round()
    assert dict(report.verdicts) == {"pass": 32}
