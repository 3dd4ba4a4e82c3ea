"""An in-memory subtensor behind the bittensor SDK's own test seam (``bt.Client(substrate=)``).

It is not a mock of our code: the adapter under test drives the real SDK (its intents, its
executor, its weight normalisation, its timelock encryption), and this class stands where the
SDK's websocket backend would. It answers the storage reads and runtime calls the SDK makes
from a small model of one subnet, records every extrinsic (pallet, function, params, signer)
and applies it by subtensor's rules for the calls our miners and validators make:
``burned_register`` (through the MEV-shield carrier the SDK requires), ``serve_axon``,
``set_mechanism_weights`` (registration, validator permit, version key, rate limit, lengths,
duplicate and unknown UIDs) and ``commit_timelocked_mechanism_weights``. A refused call is an
included extrinsic that failed with the pallet's error name, as on chain.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from bittensor import Balance, ChainError, ExtrinsicResult

U16_MAX = 65535
MLKEM768_PUBLIC_KEY = bytes(1184)  # all-zero coefficients: a valid ML-KEM-768 public key


@dataclass
class FakeNeuron:
    hotkey: str
    coldkey: str
    registered_at: int
    stake: int = 0  # rao
    axon: tuple[int, int, int] | None = None  # (ip as int, port, ip_type)
    last_update: int = 0
    incentive: int = 0  # u16 fractions, as the runtime API returns them
    dividends: int = 0


@dataclass(frozen=True)
class Extrinsic:
    """One extrinsic as subtensor received it, and what became of it."""

    pallet: str
    function: str
    params: dict[str, Any]
    signer: str
    block: int
    success: bool
    error: str | None = None
    shielded: bool = False


@dataclass
class FakeSubtensor:
    """One subnet (``netuid``) of an in-memory subtensor, in the SDK's ``Substrate`` shape."""

    netuid: int = 7
    block: int = 5000
    block_seconds: float = 12.0
    tempo: int = 360
    weights_rate_limit: int = 100
    version_key: int = 0
    burn: int = 500_000_000  # rao: 0.5 TAO
    commit_reveal: bool = False
    reveal_period_epochs: int = 1
    max_validators: int = 64
    min_allowed_weights: int = 1
    max_weight_limit: int = U16_MAX  # the largest share of the sum one weight may be, of 65535
    neurons: list[FakeNeuron] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)  # coldkey -> free rao
    stake_of: dict[str, int] = field(default_factory=dict)  # hotkey -> rao, once registered
    extrinsics: list[Extrinsic] = field(default_factory=list)
    weights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # uid -> [(dest, w)]
    commits: dict[int, list[tuple[bytes, int]]] = field(default_factory=dict)  # uid -> [(, round)]
    reads: list[tuple[str, str]] = field(default_factory=list)
    token_symbols: dict[int, str] = field(default_factory=dict)
    _signed: dict[str, tuple[Any, str]] = field(default_factory=dict)
    _included: dict[str, ExtrinsicResult] = field(default_factory=dict)
    _nonces: dict[str, int] = field(default_factory=dict)

    # Test helpers -----------------------------------------------------------------

    def add_neuron(self, hotkey: str, coldkey: str, stake: int = 0) -> int:
        stake = stake or self.stake_of.get(hotkey, 0)
        self.neurons.append(FakeNeuron(hotkey, coldkey, self.block, stake=stake))
        return len(self.neurons) - 1

    def uid(self, hotkey: str) -> int | None:
        return next((i for i, n in enumerate(self.neurons) if n.hotkey == hotkey), None)

    def advance(self, blocks: int) -> None:
        self.block += blocks

    def permits(self) -> list[bool]:
        staked = sorted(
            (i for i, n in enumerate(self.neurons) if n.stake > 0),
            key=lambda i: -self.neurons[i].stake,
        )[: self.max_validators]
        return [i in staked for i in range(len(self.neurons))]

    def calls(self, function: str) -> list[Extrinsic]:
        return [e for e in self.extrinsics if e.function == function]

    # The Substrate seam: lifecycle and blocks ---------------------------------------

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        return Balance(int(rao), netuid, self.token_symbols.get(netuid) if netuid else None)

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def block_hash(self, block: int | None = None) -> str:
        number = self.block if block is None else block
        if number > self.block:
            return ""
        return "0x" + number.to_bytes(32, "big").hex()

    async def block_number(self) -> int:
        return self.block

    async def finalized_block_number(self) -> int:
        return self.block

    async def block_time(self) -> float:
        return self.block_seconds

    async def spec_version(self) -> int:
        return 400

    async def events(self, block_hash: str | None = None) -> list[dict[str, Any]]:
        return []

    # Reads ----------------------------------------------------------------------------

    async def query(
        self,
        module: str,
        storage_function: str,
        params: list[Any] | None = None,
        block_hash: str | None = None,
    ) -> Any:
        self.reads.append((module, storage_function))
        args = list(params or [])
        if module == "System" and storage_function == "Account":
            return {"data": {"free": self.balances.get(args[0], 0)}}
        if module != "SubtensorModule":
            raise ChainError(f"the fake subtensor has no storage {module}.{storage_function}")
        if storage_function == "Uids":
            return self.uid(args[1]) if args[0] == self.netuid else None
        per_subnet = {
            "CommitRevealWeightsEnabled": self.commit_reveal,
            "WeightsSetRateLimit": self.weights_rate_limit,
            "LastUpdate": [n.last_update for n in self.neurons],
            "MinAllowedWeights": self.min_allowed_weights,
            "MaxWeightsLimit": self.max_weight_limit,
            "SubnetEpochConsensus": "Yuma",
            "ValidatorPermit": self.permits(),
            "WeightsVersionKey": self.version_key,
            "Burn": self.burn,
            "CollateralLockShare": 0,
            "Tempo": self.tempo,
            "RevealPeriodEpochs": self.reveal_period_epochs,
            "LastEpochBlock": self.block - self.block % self.tempo,
            "PendingEpochAt": 0,
            "SubnetEpochIndex": self.block // self.tempo,
            "BlocksSinceLastStep": self.block % self.tempo,
        }
        if storage_function not in per_subnet:
            raise ChainError(f"the fake subtensor has no storage {module}.{storage_function}")
        if args and args[0] != self.netuid:
            return None
        return per_subnet[storage_function]

    async def map_has_entries(
        self, module: str, storage_function: str, params: list[Any], block_hash: str | None = None
    ) -> bool:
        return bool(await self.query_map(module, storage_function, params, block_hash))

    async def query_map(
        self,
        module: str,
        storage_function: str,
        params: list[Any] | None = None,
        block_hash: str | None = None,
    ) -> list[tuple[Any, Any]]:
        # TokenSymbol among them: the SDK reads it at connect and shrugs off a ChainError.
        raise ChainError(f"the fake subtensor has no storage map {module}.{storage_function}")

    async def query_batch(
        self,
        module: str,
        storage_function: str,
        param_sets: list[list[Any]],
        block_hash: str | None = None,
    ) -> list[Any]:
        return [await self.query(module, storage_function, p, block_hash) for p in param_sets]

    async def runtime_call(
        self, api: str, method: str, params: list[Any], block_hash: str | None = None
    ) -> Any:
        self.reads.append((api, method))
        if (api, method) != ("SubnetInfoRuntimeApi", "get_metagraph"):
            raise ChainError(f"the fake subtensor has no runtime API {api}.{method}")
        if params[0] != self.netuid:
            return None
        n = self.neurons
        return {
            "netuid": self.netuid,
            "name": b"storage",
            "symbol": b"S",
            "block": self.block,
            "tempo": self.tempo,
            "last_step": self.block - self.block % self.tempo,
            "blocks_since_last_step": self.block % self.tempo,
            "owner_hotkey": n[0].hotkey if n else "",
            "owner_coldkey": n[0].coldkey if n else "",
            "network_registered_at": 1,
            "num_uids": len(n),
            "max_uids": 256,
            "hotkeys": [x.hotkey for x in n],
            "coldkeys": [x.coldkey for x in n],
            "axons": [
                {"ip": x.axon[0], "port": x.axon[1], "ip_type": x.axon[2]} if x.axon else None
                for x in n
            ],
            "active": [True] * len(n),
            "validator_permit": self.permits(),
            "last_update": [x.last_update for x in n],
            "block_at_registration": [x.registered_at for x in n],
            "incentives": [x.incentive for x in n],
            "dividends": [x.dividends for x in n],
            "total_stake": [x.stake for x in n],
        }

    async def constant(self, module: str, name: str) -> Any:
        raise ChainError(f"the fake subtensor has no constant {module}.{name}")

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        raise ChainError("the fake subtensor decodes nothing")

    # Calls and fees -------------------------------------------------------------------

    async def compose(self, call: Any) -> Any:
        return call  # bt.calls' (module, function, params) tuple, kept as is

    async def estimate_fee(self, call: Any, keypair: Any) -> Balance:
        return Balance.from_rao(100_000)

    async def estimate_weight(self, call: Any, keypair: Any) -> dict[str, int]:
        return {"ref_time": 1, "proof_size": 1}

    async def account_next_index(self, address: str) -> int:
        return self._nonces.get(address, 0)

    async def mev_next_key(self) -> bytes:
        return MLKEM768_PUBLIC_KEY

    async def sign_extrinsic(
        self, call: Any, keypair: Any, *, nonce: int, period: int
    ) -> tuple[bytes, str]:
        payload = repr((call, nonce)).encode()
        signature = keypair.sign(payload)  # a real key signs, or this fails
        digest = "0x" + hashlib.blake2b(payload + bytes(signature), digest_size=32).hexdigest()
        self._signed[digest] = (call, keypair.ss58_address)
        return payload, digest

    async def submit(
        self,
        call: Any,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = None,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> ExtrinsicResult:
        keypair.sign(repr(call).encode())  # a real key signs, or this fails
        signer = keypair.ss58_address
        self._nonces[signer] = self._nonces.get(signer, 0) + 1
        self.block += 1
        module, function, _params = call
        if (module, function) == ("MevShield", "submit_encrypted"):
            # The block author decrypts the carrier and runs the inner extrinsic in the same
            # block. The ciphertext is real ML-KEM, which a fake cannot open: the inner call
            # is the one this signer signed last.
            digest = next(d for d, (_, s) in reversed(self._signed.items()) if s == signer)
            inner, _ = self._signed.pop(digest)
            self._nonces[signer] += 1
            self._included[digest] = self._apply(inner, signer, shielded=True)
            return self._result(True, "")
        return self._apply(call, signer)

    async def submit_signed(self, extrinsic: Any, keypair: Any, **_: Any) -> ExtrinsicResult:
        raise ChainError("the fake subtensor takes calls, not signed extrinsics")

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str) -> ExtrinsicResult | None:
        return self._included.get(extrinsic_hash)

    # The pallet's rules -------------------------------------------------------------

    def _result(self, success: bool, error: str | None) -> ExtrinsicResult:
        return ExtrinsicResult(
            success=success,
            message="" if success else f"SubtensorModule.{error}",
            block_hash="0x" + self.block.to_bytes(32, "big").hex(),
            extrinsic_id=f"{self.block}-1",
            error=None if success else ChainError(f"SubtensorModule.{error}", name=error),
        )

    def _apply(self, call: Any, signer: str, *, shielded: bool = False) -> ExtrinsicResult:
        module, function, params = call
        error = self._rules(function, dict(params), signer)
        self.extrinsics.append(
            Extrinsic(
                module, function, dict(params), signer, self.block, not error, error, shielded
            )
        )
        return self._result(error is None, error)

    def _rules(self, function: str, params: dict[str, Any], signer: str) -> str | None:  # noqa: PLR0911
        if params.get("netuid") != self.netuid:
            return "MechanismDoesNotExist"
        if function == "burned_register":
            if self.uid(params["hotkey"]) is not None:
                return "HotKeyAlreadyRegisteredInSubNet"
            if self.balances.get(signer, 0) < self.burn:
                return "NotEnoughBalanceToStake"
            self.balances[signer] -= self.burn
            self.add_neuron(params["hotkey"], signer)
            return None
        uid = self.uid(signer)
        if uid is None:
            return "HotKeyNotRegisteredInSubNet"
        me = self.neurons[uid]
        if function == "serve_axon":
            ip_type = 6 if ipaddress.ip_address(params["ip"]).version == 6 else 4
            if params["ip_type"] != ip_type:
                return "InvalidIpType"
            me.axon = (params["ip"], params["port"], params["ip_type"])
            return None
        if function in ("set_mechanism_weights", "commit_timelocked_mechanism_weights"):
            if me.last_update and self.block - me.last_update < self.weights_rate_limit:
                return "SettingWeightsTooFast"
            if not self.permits()[uid]:
                return "NeuronNoValidatorPermit"
            if function == "commit_timelocked_mechanism_weights":
                if not self.commit_reveal:
                    return "CommitRevealDisabled"
                self.commits.setdefault(uid, []).append(
                    (bytes(params["commit"]), params["reveal_round"])
                )
                me.last_update = self.block
                return None
            if self.commit_reveal:
                return "CommitRevealEnabled"
            if params["version_key"] < self.version_key:
                return "IncorrectWeightVersionKey"
            dests, values = list(params["dests"]), list(params["weights"])
            if len(dests) != len(values):
                return "WeightVecNotEqualSize"
            if len(set(dests)) != len(dests):
                return "DuplicateUids"
            if any(d >= len(self.neurons) for d in dests):
                return "UidVecContainInvalidOne"
            if any(not 0 <= v <= U16_MAX for v in values):
                return "InvalidWeights"
            if len(values) > 1 and max(values) * U16_MAX > self.max_weight_limit * sum(values):
                return "MaxWeightExceeded"
            self.weights[uid] = list(zip(dests, values, strict=True))
            me.last_update = self.block
            return None
        return "CallNotModelledByTheFake"
