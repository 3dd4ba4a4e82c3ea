"""One byte budget for the segments a validator holds, shared by every upload and download.

A download takes a grant for each segment before it fetches its shares and gives it back
once the segment is written to the client. An upload cannot take its segments one grant at
a time (the encoder needs a few segments in hand before it lets one go, so two uploads each
holding part of what they need could wait on each other forever): it asks once, with its
slot, for its pipeline's whole window (:func:`upload_window`), as a wish and a least (a
shallower pipeline), and is granted the wish, or what is free if that is at least the
least. So the validator's memory is bounded by the budget, not by how many transfers run;
one transfer alone gets the full depth, and many share (docs/benchmarks.md, "Memory with a
4 GiB object").

Fairness: grants are handed in the order asked, except that a user already holding
``per_user`` bytes waits without holding up anyone else. A request larger than what a user
may hold is cut to that, so every request is granted eventually.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge

from erasure import ErasureParams
from erasure.crypto import TAG_SIZE


@dataclass(frozen=True, slots=True)
class Depth:
    """How deep one upload's pipeline runs: segments coded at once, and pushed at once."""

    workers: int
    in_flight: int


LEAST_DEPTH = Depth(1, 1)


HEDGE = 2  # shares a download asks for beyond k when the first k are slow (downloads.py)
# Body bytes an upload holds between the socket and its encoder thread. As received, a
# body's chunks are up to ~1 MiB each (aiohttp joins what it buffered); a queue bounded by
# count, not bytes, held up to ~30 MiB per upload outside any grant (bench/memory.py).
BODY_QUEUE = 4 * 1024 * 1024


def download_charge(params: ErasureParams, *, hedge: int = HEDGE, decoded: bool = False) -> int:
    """What one segment in hand costs a download: the shares it may fetch at once (k, and
    ``hedge`` more when they are slow), and the decoded segment beside them if it decodes."""
    stored = params.segment_size + TAG_SIZE
    shares = params.shard_size(stored) * (params.k + hedge)
    return shares + (stored if decoded else 0)


def upload_window(
    params: ErasureParams, depth: Depth, *, size: int | None, presealed: bool, seals: bool
) -> int:
    """Bytes of segments one upload holds at most at ``depth``: what it asks of the budget.

    In hand at once: ``in_flight`` segments being pushed, one handed over from the encoder,
    ``workers`` being coded or waiting to be handed (one of them being cut from the body),
    each with its check shares; the plaintext beside the ciphertext of each segment the
    validator ``seals``; when the body's length (``size``) is unknown, a whole segment
    held back until the next byte shows it is not the last (``erasure.split_segments``);
    and the body's chunks queued for the encoder (:data:`BODY_QUEUE`). Never more segments
    than the object has."""
    cut = params.segment_size + (TAG_SIZE if presealed else 0)
    segments = depth.in_flight + 1 + depth.workers
    if size is not None:
        segments = min(segments, max(1, -(-size // cut)))
        cut = min(cut, max(1, size))
    coded = cut + (params.m - params.k) * params.shard_size(cut)
    window = segments * coded
    if seals:
        window += min(segments, depth.workers) * cut
    if size is None:
        window += cut
    return window + (BODY_QUEUE if size is None else min(BODY_QUEUE, size))


@dataclass(eq=False)
class Grant:
    """Bytes held against the budget until :meth:`release` (idempotent)."""

    budget: TransferBudget
    user: int
    size: int
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.budget._give_back(self)


@dataclass(eq=False)
class _Waiter:
    user: int
    size: int
    least: int
    future: asyncio.Future[Grant] = field(repr=False)


class TransferBudget:
    def __init__(self, total: int, per_user: int | None = None) -> None:
        if total < 1:
            raise ValueError("a transfer budget is at least one byte")
        self.total = total
        self.per_user = min(total, per_user or total)
        self.free = total
        self._held: dict[int, int] = {}  # user -> bytes; only users holding any
        self._waiting: deque[_Waiter] = deque()

    def held_by(self, user: int) -> int:
        return self._held.get(user, 0)

    @property
    def waiting(self) -> int:
        """Requests waiting for a grant."""
        return len(self._waiting)

    def would_wait(self, user: int, size: int) -> bool:
        """Whether :meth:`take` of ``size`` bytes for ``user`` would wait now."""
        size = max(0, min(size, self.per_user))
        if size > self._room(user):
            return True
        # Of those still waiting, one at its own cap holds no one up; any other is first in
        # line (first come, first served), as :meth:`_wake` grants.
        return any(not self._at_own_cap(w) for w in self._waiting if not w.future.cancelled())

    async def take(self, user: int, size: int, least: int | None = None) -> Grant:
        """A grant of ``size`` bytes (at most ``per_user``), once they are free; with
        ``least``, of what is free as soon as that is at least ``least`` bytes."""
        size = max(0, min(size, self.per_user))
        least = size if least is None else max(0, min(least, size))
        waiter = _Waiter(user, size, least, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        self._wake()  # granted at once when it fits and nobody it may not overtake waits
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().release()  # granted as we were cancelled: give it back
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
                self._wake()  # it may have been the head that held the others up
            raise

    def _grant(self, user: int, size: int) -> Grant:
        self.free -= size
        self._held[user] = self.held_by(user) + size
        return Grant(self, user, size)

    def _give_back(self, grant: Grant) -> None:
        self.free += grant.size
        left = self._held[grant.user] - grant.size
        if left:
            self._held[grant.user] = left
        else:
            del self._held[grant.user]
        self._wake()

    def _room(self, user: int) -> int:
        """What ``user`` could be granted now: what is free, up to its cap."""
        return min(self.free, self.per_user - self.held_by(user))

    def _at_own_cap(self, waiter: _Waiter) -> bool:
        """Whether ``waiter`` waits on its own user's grants, not on the others'."""
        return waiter.least > self.per_user - self.held_by(waiter.user)

    def _wake(self) -> None:
        for waiter in list(self._waiting):
            if waiter.future.cancelled():  # its task is being cancelled: it asks for nothing
                self._waiting.remove(waiter)
                continue
            if self._at_own_cap(waiter):
                continue  # it holds no one up
            room = self._room(waiter.user)
            if waiter.least > room:
                return  # first come, first served: no one overtakes a larger request
            self._waiting.remove(waiter)
            waiter.future.set_result(self._grant(waiter.user, min(waiter.size, room)))


def export_metrics(budget: TransferBudget, registry: CollectorRegistry) -> None:
    """The budget's state at each scrape: what operators watch to size ``transfer_memory``
    (transfers that wait for a grant are waiting on memory, not on miners)."""
    Gauge(
        "validator_transfer_memory_bytes", "The transfer budget, bytes.", registry=registry
    ).set_function(lambda: budget.total)
    Gauge(
        "validator_transfer_memory_held_bytes",
        "Bytes of the transfer budget granted to uploads and downloads now.",
        registry=registry,
    ).set_function(lambda: budget.total - budget.free)
    Gauge(
        "validator_transfer_memory_waiting",
        "Uploads' and downloads' requests waiting for a grant now.",
        registry=registry,
    ).set_function(lambda: budget.waiting)
