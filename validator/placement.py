"""Where a segment's shards go: m distinct miners, weighted, never two behind one IP.

Candidates are put in a weighted random order (Efraimidis-Spirakis: each gets the key
``u ** (1 / weight)``, compared as its logarithm, and the largest keys come first), with
weight = free capacity (capped, so one huge miner does not take everything) times
reputation. A miner without room for the shard, or with zero reputation, is never picked.

``pick`` then walks that order and takes miners whose IP is not yet used by the segment,
preferring a /24 (IPv4) or /48 (IPv6) not yet used either ("servers of happiness"). The same
call hands out replacements when a push fails (Storj's long tail): pass the hosts already
holding the segment's other shards.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FREE_CAP = 1 << 40  # beyond 1 TiB free, more room does not make a miner more likely


@dataclass(frozen=True, slots=True)
class Candidate:
    hotkey: str
    host: str  # IP address the miner serves on
    port: int
    free_bytes: int
    reputation: float  # 0..1

    @property
    def weight(self) -> float:
        return min(self.free_bytes, FREE_CAP) / FREE_CAP * max(0.0, self.reputation)


@functools.lru_cache(maxsize=4096)  # pure; pick() asks for every candidate it walks
def network_of(host: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) a host is in; the host itself if it is a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def hard_network(host: str, prefix: int) -> str | None:
    """The network the hard rule keys ``host`` by; None when the rule does not apply (off,
    a loopback address, or a name whose address is not known here)."""
    if prefix <= 0:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        return None
    bits = min(prefix, 32) if address.version == 4 else min(prefix + 24, 128)
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def credible_free(claimed: int, proven: int, unproven_allowance: int) -> int:
    """Free space to weigh a miner by: what it claims, but no more than it has proven it
    holds plus an allowance (so a newcomer can get its first shares)."""
    return max(0, min(claimed, proven + unproven_allowance))


def rank(candidates: Iterable[Candidate], shard_size: int, rng: random.Random) -> list[Candidate]:
    """Eligible candidates in weighted random order, most preferred first."""
    keyed = []
    for candidate in candidates:
        weight = candidate.weight
        if candidate.free_bytes < shard_size or weight <= 0:
            continue
        # log(u ** (1 / weight)) orders the same and does not underflow: u ** (1 / weight)
        # is 0.0 for most u once weight is small (256 MiB free is 1/4096 of FREE_CAP), and
        # such miners would all tie and be taken in hotkey order instead of at random.
        u = rng.random() or sys.float_info.min
        keyed.append((math.log(u) / weight, candidate.hotkey, candidate))
    keyed.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [candidate for _, _, candidate in keyed]


def pick(
    ranked: Sequence[Candidate],
    count: int,
    *,
    taken_hosts: Iterable[str] = (),
    exclude: Iterable[str] = (),
    network_prefix: int = 0,
) -> list[Candidate]:
    """Up to ``count`` candidates from ``ranked``, on hosts not in ``taken_hosts``.

    A first pass also avoids networks already used; a second fills up from any unused host
    (but never, with ``network_prefix``, from a network the hard rule already has).
    ``exclude`` names hotkeys not to use (miners that already failed this segment).
    """
    hosts = set(taken_hosts)
    networks = {network_of(h) for h in hosts}
    blocked = {hard_network(h, network_prefix) for h in hosts} - {None}
    skip = set(exclude)
    chosen: list[Candidate] = []
    for spread_networks in (True, False):
        for candidate in ranked:
            if len(chosen) == count:
                return chosen
            if candidate.hotkey in skip or candidate.host in hosts:
                continue
            if spread_networks and network_of(candidate.host) in networks:
                continue
            hard = hard_network(candidate.host, network_prefix)
            if hard is not None and hard in blocked:
                continue
            chosen.append(candidate)
            skip.add(candidate.hotkey)
            hosts.add(candidate.host)
            networks.add(network_of(candidate.host))
            if hard is not None:
                blocked.add(hard)
    return chosen
