""":class:`~chain.client.Chain` on subtensor, through the official ``bittensor`` SDK (11.x).

Only this module imports the SDK, and only services started with ``--network`` import this
module: ``subnet --help`` and the embedded chain never load it. It needs the ``bittensor``
extra (``pip install -e ".[bittensor]"``).

Every chain operation goes through the SDK's intents (never a hand-built extrinsic):

- ``metagraph()``: ``client.subnets.metagraph(netuid)`` (one runtime-API call) and the
  subnet's ``WeightsVersionKey``.
- ``register()``: the hotkey's UID if it has one; else ``BurnedRegister``, which burns the
  subnet's registration cost from the **coldkey** (the only operation here that needs it), and
  only once ``confirm`` has said yes to the quote (cost, coldkey, hotkey). No ``confirm``: a
  refusal (``registration_not_confirmed``) that says how to register.
- ``serve_axon()``: ``ServeAxon`` signed by the hotkey (subtensor stores an IP, not a name).
- ``set_weights()``: ``SetWeights`` signed by the hotkey. The SDK clips to the subnet's
  max-weight limit, max-upscales to u16 (the largest weight is 65535, as the pallet stores
  them), drops zeros, checks registration and the weights rate limit before signing, and
  sends a drand-timelocked commit instead of plain weights when the subnet has commit-reveal
  on (the chain reveals it at the reveal round; no reveal call is ours to make). A refusal is
  a :class:`~chain.client.ChainRequestError` with the chain's reason; a rate-limit refusal
  carries ``retry_after``, the seconds until the next block weights are allowed at.

The SDK is asyncio-native (``bt.Client``), so nothing here blocks the event loop; reading key
files (and unlocking an encrypted coldkey, which may prompt) runs in a thread. The reward
figures the embedded chain records beside weights (capacity, availability) have no place on
subtensor: ``set_weights`` takes them for the interface's sake and sends nothing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.client import ChainRequestError
from chain.metagraph import Metagraph, Neuron

try:
    import bittensor as bt
    from bittensor.wallets import signing_keypair
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "--network needs the bittensor SDK, an optional extra: "
        "pip install -e '.[bittensor]' (or pip install 'bittensor==11.3.0')"
    ) from exc

log = logging.getLogger(__name__)

VERSION_KEY = ("SubtensorModule", "WeightsVersionKey")
UIDS = ("SubtensorModule", "Uids")
RATE_LIMIT = ("SubtensorModule", "WeightsSetRateLimit")
LAST_UPDATE = ("SubtensorModule", "LastUpdate")

# ChainRequestError statuses for the SDK's error codes, in the embedded chain's terms.
_STATUS = {
    "rate_limited": 429,
    "not_registered": 403,
    "not_authorized": 403,
    "insufficient_balance": 402,
    "subnet_not_exists": 404,
    "not_found": 404,
}


@dataclass(frozen=True, slots=True)
class RegistrationQuote:
    """What a burned registration would cost, shown before anyone agrees to pay it."""

    network: str
    netuid: int
    hotkey: str
    coldkey: str
    cost_rao: int  # the subnet's current registration cost (burn plus any collateral lock)
    effects: tuple[str, ...]  # the SDK's own preview lines (burn, lock)
    fee: str | None  # the transaction fee estimate, when the SDK could make one

    @property
    def cost_tao(self) -> str:
        return str(bt.Balance.from_rao(self.cost_rao))

    def describe(self) -> str:
        lines = [
            f"Register hotkey {self.hotkey} on netuid {self.netuid} of {self.network}.",
            f"Cost: {self.cost_tao}, paid by coldkey {self.coldkey}"
            + (f" (plus a fee of ~{self.fee})" if self.fee else "")
            + ". It is not refunded if the UID is later pruned.",
            *(f"  {line}" for line in self.effects),
        ]
        return "\n".join(lines)


Confirm = Callable[[RegistrationQuote], bool]  # runs in a thread: it may ask on a terminal


@dataclass(frozen=True, slots=True)
class _Keys:
    """The SDK's ``KeyedWallet`` shape for a burned registration: the coldkey signs and pays,
    the hotkey is the one registered."""

    coldkey: Any
    coldkeypub: Any
    hotkey: Any


class SubtensorChain:
    """:class:`~chain.client.Chain` for ``netuid`` on ``network`` (finney, test, local or a
    ws:// URL), as the wallet's hotkey. Wallets are read as btcli writes them.

    ``substrate`` replaces the SDK's RPC backend with any implementation of its
    ``bittensor.Substrate`` seam (the tests' in-memory subtensor). The connection opens on
    first use and is retried on the next call after a failure; :meth:`close` ends it.
    """

    def __init__(
        self,
        network: str,
        netuid: int,
        *,
        wallet_name: str,
        wallet_hotkey: str,
        wallet_path: Path | str,
        confirm: Confirm | None = None,
        substrate: Any = None,
    ) -> None:
        self.network = network
        self.netuid = netuid
        self.confirm = confirm
        self.wallet = bt.Wallet(
            wallet_name, wallet_hotkey, path=str(Path(wallet_path).expanduser())
        )
        self._substrate = substrate
        self._client: bt.Client | None = None
        self._connecting = asyncio.Lock()
        self._hotkey: Any = None

    # The Chain interface -------------------------------------------------------------

    @property
    def hotkey(self) -> str:
        """The hotkey's address (read from its file on first use)."""
        if self._hotkey is None:
            self._hotkey = self.wallet.hotkey
        return str(self._hotkey.ss58_address)

    async def register(self) -> int:
        client, hotkey = await self._ready()
        uid = await self._uid(client, hotkey.ss58_address)
        if uid is not None:
            return uid
        quote = await self.quote_registration()
        agreed = self.confirm is not None and await asyncio.to_thread(self.confirm, quote)
        if not agreed:
            raise ChainRequestError(
                403,
                "registration_not_confirmed",
                f"hotkey {quote.hotkey} is not registered on netuid {self.netuid} of "
                f"{self.network}; registering costs {quote.cost_tao} from coldkey "
                f"{quote.coldkey}: start once on a terminal to confirm it, or pass --yes",
            )
        coldkey = await asyncio.to_thread(self._unlock_coldkey)
        keys = _Keys(coldkey=coldkey, coldkeypub=coldkey, hotkey=hotkey)
        log.info(
            "registering on subtensor",
            extra={"network": self.network, "netuid": self.netuid, "cost": quote.cost_tao},
        )
        await self._execute(client, bt.BurnedRegister(netuid=self.netuid), keys)
        uid = await self._uid(client, hotkey.ss58_address)
        if uid is None:
            raise ChainRequestError(
                409, "not_registered", "the registration was included but the hotkey has no UID"
            )
        return uid

    async def serve_axon(self, host: str, port: int) -> None:
        ip = host.strip("[]")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ChainRequestError(
                400,
                "bad_axon",
                f"subtensor stores an IP address, and {host!r} is not one: "
                "give --external-host as an address, e.g. 203.0.113.7",
            ) from None
        client, hotkey = await self._ready()
        await self._execute(client, bt.ServeAxon(netuid=self.netuid, ip=ip, port=port), hotkey)

    async def metagraph(self) -> Metagraph:
        client, _ = await self._ready()
        async with _translated():
            graph = await client.subnets.metagraph(self.netuid, commitments=False)
            version_key = await client.query(VERSION_KEY, [self.netuid])
        if graph is None:
            raise ChainRequestError(
                404, "subnet_not_exists", f"netuid {self.netuid} does not exist on {self.network}"
            )
        neurons = tuple(
            Neuron(
                uid=n.uid,
                hotkey=n.hotkey,
                stake=n.total_stake.rao,  # the subnet's stake (alpha plus weighted root TAO)
                validator_permit=n.validator_permit,
                axon=n.axon,
                incentive=n.incentive,
                dividends=n.dividends,
                trust=n.trust,
                consensus=n.consensus,
                last_update=n.last_update or None,
                registered_at=n.block_at_registration,
            )
            for n in graph.neurons
        )
        return Metagraph(
            block=graph.block,
            tempo=graph.tempo,
            version_key=int(version_key or 0),
            neurons=neurons,
        )

    async def set_weights(
        self,
        uids: Sequence[int],
        weights: Sequence[float],
        version_key: int,
        figures: Mapping[int, tuple[int, float]] | None = None,
    ) -> int:
        """Send weights (or their timelocked commit); the block they were included in.

        ``figures`` are not sent: subtensor has no place for them (the validator keeps them
        in its own records and metrics).
        """
        del figures
        client, hotkey = await self._ready()
        intent = bt.SetWeights(
            netuid=self.netuid,
            uids=[int(uid) for uid in uids],
            weights=[float(w) for w in weights],
            version_key=version_key,
        )
        try:
            result = await self._execute(client, intent, hotkey)
        except ChainRequestError as exc:
            if exc.code == "rate_limited":
                exc.retry_after = await self._until_weights_allowed(client, hotkey.ss58_address)
            raise
        return await self._included_at(client, result)

    async def block(self) -> int:
        client, _ = await self._ready()
        async with _translated():
            return int(await client.block())

    # Beyond the interface ------------------------------------------------------------

    async def quote_registration(self) -> RegistrationQuote:
        """The cost of registering the hotkey now, from the SDK's own plan of it."""
        client, hotkey = await self._ready()
        coldkeypub = await asyncio.to_thread(lambda: self.wallet.coldkeypub)
        keys = _Keys(coldkey=coldkeypub, coldkeypub=coldkeypub, hotkey=hotkey)
        async with _translated():
            cost = await client.subnets.burn(self.netuid)
            plan = await client.plan(bt.BurnedRegister(netuid=self.netuid), keys)
        return RegistrationQuote(
            network=self.network,
            netuid=self.netuid,
            hotkey=hotkey.ss58_address,
            coldkey=coldkeypub.ss58_address,
            cost_rao=cost.rao,
            effects=tuple(plan.effects[1:]),  # the first line is the summary
            fee=None if plan.fee is None else str(plan.fee),
        )

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):  # closing a broken connection may fail
                await client.close()

    async def __aenter__(self) -> SubtensorChain:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # Internals -----------------------------------------------------------------------

    async def _ready(self) -> tuple[bt.Client, Any]:
        async with self._connecting:
            if self._hotkey is None:
                self._hotkey = await asyncio.to_thread(lambda: self.wallet.hotkey)
            if self._client is None:
                client = bt.Client(self.network, substrate=self._substrate)
                async with _translated():
                    await client.connect()
                self._client = client
        return self._client, self._hotkey

    def _unlock_coldkey(self) -> Any:
        # Password from $BT_WALLET_PASSWORD, $BT_WALLET_PASSWORD_FILE, or a terminal prompt.
        try:
            return signing_keypair(self.wallet, "coldkey")
        except (OSError, ValueError) as exc:
            raise ChainRequestError(
                403, "coldkey_locked", f"cannot unlock the coldkey of {self.wallet.name}: {exc}"
            ) from None

    async def _uid(self, client: bt.Client, hotkey: str) -> int | None:
        async with _translated():
            raw = await client.query(UIDS, [self.netuid, hotkey])
        return None if raw is None else int(raw)

    async def _execute(self, client: bt.Client, intent: Any, wallet: Any) -> bt.ExtrinsicResult:
        # Inclusion is enough: the block it landed in is what callers want, and waiting for
        # finality would hold each call for several more blocks.
        async with _translated():
            result = await client.execute(intent, wallet, wait_for_finalization=False)
        if not result.success:
            error = result.error or bt.ChainError(result.message or "the extrinsic failed")
            raise _refusal(error)
        return result

    async def _included_at(self, client: bt.Client, result: bt.ExtrinsicResult) -> int:
        block, _, _ = (result.extrinsic_id or "").partition("-")
        if block.isdigit():
            return int(block)
        async with _translated():
            return int(await client.block())

    async def _until_weights_allowed(self, client: bt.Client, hotkey: str) -> float:
        """Seconds until the weights rate limit lets this hotkey set weights again."""
        async with _translated():
            now = int(await client.block())
            uid, limit, last, block_time = await asyncio.gather(
                client.query(UIDS, [self.netuid, hotkey]),
                client.query(RATE_LIMIT, [self.netuid]),
                client.query(LAST_UPDATE, [self.netuid]),
                client.block_time(),
            )
        if uid is None or not isinstance(last, list | tuple) or int(uid) >= len(last):
            return float(block_time)
        allowed_at = int(last[int(uid)]) + int(limit or 0)
        return max(1, allowed_at - now) * float(block_time)


def _refusal(error: BaseException) -> ChainRequestError:
    """The SDK's error as the interface's :class:`ChainRequestError`, keeping its reason."""
    if isinstance(error, bt.RpcConnectionError):
        return ChainRequestError(503, "unreachable", str(error))
    if isinstance(error, bt.PolicyError):
        return ChainRequestError(403, "refused", str(error))
    if isinstance(error, bt.ChainError):
        code = error.code.value if error.code is not None else "unknown"
        reason = f"{error.name}: {error.message}" if error.name else error.message
        return ChainRequestError(_STATUS.get(code, 400), code, reason)
    return ChainRequestError(400, "sdk_error", str(error) or type(error).__name__)


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except bt.BittensorError as exc:
        raise _refusal(exc) from exc
