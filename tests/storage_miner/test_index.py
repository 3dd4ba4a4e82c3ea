"""The miner's index: incremental used space that survives a restart, and shard states."""

from __future__ import annotations

from pathlib import Path

from storage_miner.index import MinuteRecord, ShardIndex

NS = "5FPKneG8EgVf2B2S3916PWt2yMb8oLAzimf73f9vMCdHAMtR"


def test_used_bytes_is_incremental_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    index = ShardIndex(path)
    assert index.add(NS, "a" * 64, 1000, now=1.0)
    assert index.add(NS, "b" * 64, 500, now=2.0)
    assert not index.add(NS, "a" * 64, 1000, now=3.0)  # idempotent re-store
    assert index.used_bytes == 1500
    index.close()

    reopened = ShardIndex(path)
    assert reopened.used_bytes == 1500
    assert reopened.counts() == {"ok": 2, "quarantined": 0, "trash": 0}
    reopened.remove(NS, "a" * 64)
    reopened.remove(NS, "a" * 64)  # removing twice frees once
    assert reopened.used_bytes == 500


def test_trash_keeps_bytes_counted_until_purged_and_restore_revives(tmp_path: Path) -> None:
    index = ShardIndex(tmp_path / "i.sqlite")
    index.add(NS, "c" * 64, 700, now=1.0)
    index.set_state(NS, "c" * 64, "trash", now=10.0, reason="deleted by validator")
    assert index.used_bytes == 700
    assert [r.shard_id for r in index.expired_trash(before=11.0, limit=10)] == ["c" * 64]
    assert index.expired_trash(before=9.0, limit=10) == []
    assert index.add(NS, "c" * 64, 700, now=12.0)  # re-stored during the grace period
    record = index.get(NS, "c" * 64)
    assert record is not None
    assert record.state == "ok"
    assert index.used_bytes == 700


def test_scrub_order_and_quarantine_listing(tmp_path: Path) -> None:
    index = ShardIndex(tmp_path / "i.sqlite")
    for i, sid in enumerate(("d" * 64, "e" * 64, "f" * 64)):
        index.add(NS, sid, 10, now=float(i))
    index.mark_scrubbed(NS, "d" * 64, now=5.0)
    assert [r.shard_id for r in index.next_to_scrub(3)] == ["e" * 64, "f" * 64, "d" * 64]
    index.set_state(NS, "e" * 64, "quarantined", now=6.0, reason="leaf 3 does not hash")
    quarantined = index.quarantined()
    assert [(r.shard_id, r.reason) for r in quarantined] == [("e" * 64, "leaf 3 does not hash")]
    assert all(r.shard_id != "e" * 64 for r in index.next_to_scrub(10))


def test_challenge_minutes_are_replaced_whole_and_old_ones_forgotten(tmp_path: Path) -> None:
    index = ShardIndex(tmp_path / "index.sqlite")
    index.save_minutes([MinuteRecord(60.0, 1, 0, 5.0, 1), MinuteRecord(120.0, 2, 1, 9.0, 2)], 0)
    index.save_minutes([MinuteRecord(120.0, 3, 1, 12.0, 3)], forget_before=100.0)
    index.close()
    reopened = ShardIndex(tmp_path / "index.sqlite")
    assert reopened.minutes(since=0) == [MinuteRecord(120.0, 3, 1, 12.0, 3)]
    assert reopened.minutes(since=121) == []
    reopened.close()
