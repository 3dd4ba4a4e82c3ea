"""Talking to a chain: the :class:`Chain` interface, the local chain's HTTP client, and a
hotkey policy backed by the metagraph.

``Chain`` is what miners and validators depend on. :class:`ChainClient` implements it over
the local chain's HTTP API; :class:`chain.subtensor.SubtensorChain` implements it over the
``bittensor`` SDK for subtensor (finney, testnet, a subtensor localnet), and is imported only
when a service is started with ``--network``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import ClientSession
from bittensor_wallet import Keypair

from chain.metagraph import Metagraph
from protocol.signing import SigningClient

log = logging.getLogger(__name__)

SIGNED_FOR = ""  # the local chain has no hotkey; requests are signed for nobody in particular


class ChainRequestError(Exception):
    """The chain refused a request: ``status`` and the stable ``code`` it gave.

    ``retry_after`` is the seconds until the chain would accept it, when the chain says so
    (subtensor's weights rate limit).
    """

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Chain(Protocol):
    """The chain operations a miner or validator needs, as the signer's hotkey."""

    async def register(self) -> int: ...

    async def serve_axon(self, host: str, port: int) -> None: ...

    async def metagraph(self) -> Metagraph: ...

    async def set_weights(
        self,
        uids: Sequence[int],
        weights: Sequence[float],
        version_key: int,
        figures: Mapping[int, tuple[int, float]] | None = None,
    ) -> int: ...

    async def block(self) -> int: ...


class ChainClient:
    """:class:`Chain` over the local chain's HTTP API, signing as ``keypair``."""

    def __init__(self, base_url: str, keypair: Keypair, session: ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.signer = SigningClient(session, keypair)

    @property
    def hotkey(self) -> str:
        return self.signer.hotkey

    async def register(self) -> int:
        return int((await self._post("/v1/register", {}))["uid"])

    async def serve_axon(self, host: str, port: int) -> None:
        await self._post("/v1/serve", {"host": host, "port": port})

    async def set_weights(
        self,
        uids: Sequence[int],
        weights: Sequence[float],
        version_key: int,
        figures: Mapping[int, tuple[int, float]] | None = None,
    ) -> int:
        """Set weights; ``figures`` maps a miner UID to (capacity bytes, availability)."""
        body: dict[str, Any] = {
            "uids": list(uids),
            "weights": list(weights),
            "version_key": version_key,
        }
        if figures:
            body["figures"] = {
                str(uid): {"capacity_bytes": capacity, "availability": availability}
                for uid, (capacity, availability) in figures.items()
            }
        return int((await self._post("/v1/weights", body))["block"])

    async def metagraph(self) -> Metagraph:
        return Metagraph.from_dict(await self._get("/v1/metagraph"))

    async def block(self) -> int:
        return int((await self._get("/v1/block"))["block"])

    async def get(self, path: str, **query: str | int) -> dict[str, Any]:
        """Any public read (``/v1/ledger``, ``/v1/balances``, ...) as JSON."""
        return await self._get(path, query)

    async def _get(self, path: str, query: Mapping[str, str | int] | None = None) -> dict[str, Any]:
        async with self.session.get(self.base_url + path, params=query or None) as response:
            return await _json(response.status, await response.read())

    async def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        async with self.signer.request(
            "POST", self.base_url + path, signed_for=SIGNED_FOR, json=body
        ) as response:
            return await _json(response.status, await response.read())


async def _json(status: int, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if status >= 400:
        raise ChainRequestError(
            status, str(data.get("error", f"http_{status}")), str(data.get("message", ""))
        )
    return data


class MetagraphSource(Protocol):
    async def metagraph(self) -> Metagraph: ...


class MetagraphPolicy:
    """A ``HotkeyPolicy``: allows hotkeys that hold a validator permit in the metagraph.

    ``is_allowed`` is synchronous (the Epistula check calls it), so it answers from the
    last metagraph fetched; :meth:`run` refreshes it every ``refresh_seconds`` (start it in
    the app's cleanup_ctx) and :meth:`refresh` does so once. Before the first refresh
    nobody is allowed.
    """

    def __init__(
        self,
        chain: MetagraphSource,
        refresh_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chain = chain
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._validators: frozenset[str] = frozenset()
        self.refreshed_at: float | None = None

    def is_allowed(self, hotkey: str) -> bool:
        return hotkey in self._validators

    async def refresh(self) -> Metagraph:
        graph = await self.chain.metagraph()
        self._validators = graph.validators
        self.refreshed_at = self._clock()
        return graph

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the chain being down must not end the loop; logged, retried
                log.exception("refreshing the metagraph failed; keeping the last one")
            await asyncio.sleep(self.refresh_seconds)
