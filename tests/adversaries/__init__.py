"""Adversarial miners: real miner processes with one behaviour swapped in.

A fake of a miner's behaviour is the real miner (same settings and flags, the same aiohttp
app from ``storage_miner.app.make_app``, the same store and index) with a subclass of
``MinerService`` in place of the plain one. Start one from the repository root:

    python -m tests.adversaries BEHAVIOUR [subnet miner run flags...]

or from a test with :func:`tests.adversaries.process.running_miners`.

| behaviour      | what it does                                                            |
|----------------|-------------------------------------------------------------------------|
| `honest`       | nothing: the plain ``MinerService`` (the baseline every test needs)      |
| `drop:F`       | signs the receipt, then loses the shards :func:`is_dropped` picks       |
| `bitflip:F`    | flips one bit in the leaves :func:`flipped_leaves` picks, tree intact    |
| `wrongproof`   | answers with leaves and proof of another shard it holds                 |
| `replay`       | first answer honest; then drops the bytes and replays that answer       |
| `slow:S`       | sleeps S s before each challenge batch and each shard GET/HEAD          |
| `rebuild:K`    | before answering, reads K shard-sized bodies over loopback and runs a   |
|                | real zfec decode: an emulation of the cost of rebuilding from K miners  |
| `fakecap:B`    | advertises ``--capacity`` (1 PiB by default), keeps only B bytes        |

Lost data answers as the real service answers a lost shard: a per-challenge 404. Adversaries
default to ``--scrub-rate 0`` (a cheat does not set its own damage aside); pass the flag to
turn the scrubber on.
"""

from tests.adversaries.behaviours import (
    BEHAVIOURS,
    CLAIMED_CAPACITY,
    Behaviour,
    BehaviourError,
    flipped_leaves,
    is_dropped,
)

__all__ = [
    "BEHAVIOURS",
    "CLAIMED_CAPACITY",
    "Behaviour",
    "BehaviourError",
    "flipped_leaves",
    "is_dropped",
]
