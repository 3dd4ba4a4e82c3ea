"""The byte budget downloads share: first come first served, one user's cap holds up nobody
else, and a cancelled wait or a released grant gives every byte back; and upload slots,
which are weighed over one."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from erasure import ErasureParams
from validator.budget import LEAST_DEPTH, TransferBudget, download_charge, upload_window
from validator.settings import ValidatorSettings
from validator.uploads import SLOT_PARTS, UploadSlots


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_grants_in_order_and_none_overtakes_a_larger_request() -> None:
    budget = TransferBudget(100)
    first = await budget.take(1, 60)
    big = asyncio.create_task(budget.take(2, 60))
    small = asyncio.create_task(budget.take(3, 10))  # would fit now, but came after
    await settle()
    assert not big.done() and not small.done()
    first.release()
    await settle()
    assert big.done() and small.done()
    assert budget.free == 100 - 60 - 10
    big.result().release()
    small.result().release()
    assert budget.free == 100


async def test_a_user_at_its_cap_waits_alone() -> None:
    budget = TransferBudget(100, per_user=40)
    held = [await budget.take(1, 20), await budget.take(1, 20)]
    third = asyncio.create_task(budget.take(1, 20))  # alice is at her 40
    await settle()
    assert not third.done()
    other = await asyncio.wait_for(budget.take(2, 40), 1)  # bob is not held up behind her
    assert budget.held_by(2) == 40
    held[0].release()
    await settle()
    assert third.done() and budget.held_by(1) == 40
    for grant in (held[1], third.result(), other):
        grant.release()
    assert budget.free == 100 and budget.held_by(1) == budget.held_by(2) == 0


async def test_would_wait_says_what_take_would_do_now() -> None:
    budget = TransferBudget(100, per_user=40)
    assert not budget.would_wait(1, 40)
    assert not budget.would_wait(1, 10**9)  # cut to the user's 40, which fit
    held = await budget.take(1, 30)
    assert budget.would_wait(1, 20)  # over alice's cap
    assert not budget.would_wait(2, 40)
    other = await budget.take(2, 40)
    assert budget.would_wait(3, 40)  # 30 are free
    queued = asyncio.create_task(budget.take(3, 40))
    await settle()
    assert budget.would_wait(4, 1)  # someone waits first: no overtaking
    for grant in (held, other):
        grant.release()
    await settle()
    assert queued.done() and not budget.would_wait(4, 1)
    queued.result().release()
    # A user waiting at its own cap holds no one up, as take grants.
    capped = await budget.take(1, 40)
    over_cap = asyncio.create_task(budget.take(1, 10))
    await settle()
    assert budget.waiting == 1 and not budget.would_wait(2, 40)
    bob = await asyncio.wait_for(budget.take(2, 40), 1)
    over_cap.cancel()
    for grant in (capped, bob):
        grant.release()
    assert budget.free == 100 and budget.waiting == 0


async def test_a_request_larger_than_a_user_may_hold_is_cut_to_it() -> None:
    budget = TransferBudget(100, per_user=30)
    grant = await asyncio.wait_for(budget.take(1, 10**9), 1)
    assert grant.size == 30


async def test_a_cancelled_wait_holds_nothing_and_unblocks_those_behind() -> None:
    budget = TransferBudget(100)
    held = await budget.take(1, 90)
    head = asyncio.create_task(budget.take(2, 50))
    behind = asyncio.create_task(budget.take(3, 10))
    await settle()
    assert not behind.done()  # behind the head, which does not fit
    head.cancel()
    with pytest.raises(asyncio.CancelledError):
        await head
    await settle()
    assert behind.done()
    behind.result().release()
    held.release()
    held.release()  # twice is once
    assert budget.free == 100


async def test_a_release_while_a_cancelled_waiter_unwinds_skips_it() -> None:
    budget = TransferBudget(100)
    held = await budget.take(1, 100)
    cancelled = asyncio.create_task(budget.take(2, 50))
    behind = asyncio.create_task(budget.take(3, 50))
    await settle()
    cancelled.cancel()  # its future is cancelled now; its task has not run its handler yet
    held.release()  # must neither grant the cancelled waiter nor trip over it
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    grant = await asyncio.wait_for(behind, 1)
    assert budget.free == 50
    grant.release()
    assert budget.free == 100 and not budget._waiting


def test_a_budget_has_room() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        TransferBudget(0)


async def test_a_window_gets_its_wish_or_what_is_free_down_to_its_least() -> None:
    budget = TransferBudget(100)
    alone = await budget.take(1, 80, least=50)
    assert alone.size == 80  # alone: the whole wish
    alone.release()
    download = await budget.take(2, 40)
    second = await asyncio.wait_for(budget.take(1, 80, least=50), 1)
    assert second.size == 60  # not the wish, but more than the least: what is free
    third = asyncio.create_task(budget.take(3, 80, least=50))
    behind = asyncio.create_task(budget.take(2, 10))
    await settle()
    assert not third.done() and not behind.done()  # 0 free < 50; and nobody overtakes it
    download.release()
    await settle()
    assert not third.done()  # 40 free is still under its least
    second.release()
    await settle()
    assert third.result().size == 80 and behind.result().size == 10
    third.result().release()
    behind.result().release()
    assert budget.free == 100


def test_the_default_budget_holds_one_upload_beside_two_download_segments() -> None:
    assert ValidatorSettings().transfer_budget == (192 * 2**20, 192 * 2**20)
    # Larger segments: the automatic budget grows with them, a set one is kept as set.
    big = ValidatorSettings(segment_size=64 * 2**20)
    params = ErasureParams(segment_size=64 * 2**20)
    least = upload_window(params, LEAST_DEPTH, size=None, presealed=False, seals=True)
    assert big.transfer_budget[0] == least + 2 * download_charge(params) > 192 * 2**20
    assert ValidatorSettings(
        transfer_memory=300 * 2**20, transfer_memory_per_user=200 * 2**20
    ).transfer_budget == (300 * 2**20, 200 * 2**20)


async def test_upload_slots_weigh_an_upload_by_its_declared_size() -> None:
    """An upload under a segment takes its share of a slot: one user's small uploads (S3
    parts, small PUTs) run side by side, large ones still one per user, two in all."""
    segment = 16 * 2**20
    assert UploadSlots.parts(None, segment) == SLOT_PARTS  # unknown size: a whole slot
    assert UploadSlots.parts(segment, segment) == UploadSlots.parts(10 * segment, segment)
    assert UploadSlots.parts(segment // 2, segment) == SLOT_PARTS // 4  # an 8 MiB part
    assert UploadSlots.parts(16 * 1024, segment) == 1  # at least one part
    slots = UploadSlots(total=2, per_user=1)
    opened: list[contextlib.AbstractAsyncContextManager[None]] = []

    async def enter(user: int, parts: int) -> None:
        hold = slots.hold(user, parts)
        await hold.__aenter__()
        opened.append(hold)

    for _ in range(4):  # alice: four 8 MiB parts at once fill her one slot...
        await asyncio.wait_for(enter(1, UploadSlots.parts(segment // 2, segment)), 1)
    fifth = asyncio.create_task(enter(1, 1))  # ...so even a tiny fifth waits
    await asyncio.wait_for(enter(2, SLOT_PARTS), 1)  # bob's large upload does not
    await settle()
    assert not fifth.done() and slots.held == 5
    await opened.pop(0).__aexit__(None, None, None)  # one of alice's parts is stored
    await asyncio.wait_for(fifth, 1)
    for hold in opened:
        await hold.__aexit__(None, None, None)
    assert slots.held == 0
