"""A node's address on the metagraph (its axon), for miners and validators alike.

:func:`axon_address` and :func:`axon_error` are the settings' side (pure): which address a
service announces (``external_host``/``external_port``, else where it listens) and why one
cannot be announced. :func:`announce` is the one way either service puts it on a chain:
register (idempotent) and serve the axon, through any :class:`~chain.client.Chain` (the
embedded chain's client or subtensor's), unless the metagraph already shows it there.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chain.client import Chain
    from chain.metagraph import Metagraph

EVERYWHERE = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - names, not a bind


def axon_address(
    host: str, port: int, external_host: str, external_port: int | None
) -> tuple[str, int]:
    """(host, port) to announce; a bare IPv6 address gets its brackets."""
    announced = external_host or host
    if ":" in announced and not announced.startswith("["):
        announced = f"[{announced}]"
    return announced, external_port or port


def axon_error(announced_host: str, host: str, *, subtensor: bool, who: str) -> str | None:
    """Why ``announced_host`` cannot go on the chain (``who`` would dial it), else None."""
    if announced_host in EVERYWHERE:
        return (
            f"host {host!r} listens everywhere, so it is not an address {who} can dial: give "
            "the address to announce on the chain, e.g. --external-host 203.0.113.7"
        )
    if subtensor and not _is_ip(announced_host.strip("[]")):
        return (
            f"subtensor stores an axon as an IP address, and {announced_host!r} is not one: "
            "give it with --external-host, e.g. 203.0.113.7"
        )
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def announce(
    chain: Chain, graph: Metagraph, hotkey: str, axon: tuple[str, int]
) -> tuple[int, bool]:
    """(UID, announced now): registers and serves ``axon`` unless ``graph`` shows ``hotkey``
    there already (a chain reset or a pruned UID is noticed by the next metagraph read)."""
    host, port = axon
    me = graph.by_hotkey(hotkey)
    if me is not None and me.axon == f"{host}:{port}":
        return me.uid, False
    uid = await chain.register()  # idempotent on the chain: an existing UID is returned
    await chain.serve_axon(host, port)
    return uid, True
