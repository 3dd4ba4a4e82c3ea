"""The validator's settings, read once at start (see :mod:`protocol.settings`).

Environment variables are ``SUBNET_VALIDATOR_<FIELD>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bittensor_wallet.utils import is_valid_ss58_address

from chain.axon import axon_address, axon_error
from chain.networks import chain_choice_error
from erasure import ErasureParams, InvalidParamsError
from erasure.params import MAX_SHARES
from protocol.settings import SIZE, FieldError, LogFormat, LogLevel
from protocol.wallet import DEFAULT_WALLET_PATH
from validator.budget import LEAST_DEPTH, download_charge, upload_window

ENV_PREFIX = "SUBNET_VALIDATOR"
DEFAULT_DATA_DIR = Path("~/.subnet/validator").expanduser()


DEFAULT_TRANSFER_MEMORY = 192 * 2**20


@dataclass(frozen=True, slots=True)
class ValidatorSettings:
    wallet_name: str = "validator"
    wallet_hotkey: str = "default"
    wallet_path: Path = DEFAULT_WALLET_PATH
    host: str = "127.0.0.1"
    port: int = 8090
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""  # default: SQLite in data_dir
    # Users allowed to upload: "name=ss58hotkey" entries (Epistula-signed requests).
    users: tuple[str, ...] = ()
    # API tokens for scripts: "name=token" entries (put them in the environment, not flags).
    tokens: tuple[str, ...] = ()
    # Miners to place shards on, "ss58hotkey@host:port", until the metagraph provides them.
    miners: tuple[str, ...] = ()
    k: int = 4
    m: int = 8
    segment_size: int = field(default=16 * 2**20, metadata=SIZE)
    leaf_size: int = field(default=16 * 2**10, metadata=SIZE)
    # The erasure codec of uploads that do not choose one (PUT /v1/objects?codec=):
    # zfec, or isal (ISA-L Cauchy Reed-Solomon through pyeclib, several times faster).
    codec: Literal["zfec", "isal"] = "zfec"
    extra_receipts: int = 1
    # Placement: never two shares of a segment in one /N IPv4 network (/48 for IPv6 at 24),
    # since hotkeys behind one network are likely one operator; 0 turns it off (a LAN).
    # Loopback addresses are exempt: a local net puts every miner on 127.0.0.0/8.
    placement_network_prefix: int = 24
    # A miner's claimed free space counts for placement only up to what it has proven
    # (verified bytes) plus this much, so claiming a huge disk does not draw the shares.
    placement_unproven_bytes: int = field(default=64 * 2**30, metadata=SIZE)
    max_object_size: int = field(default=1 << 40, metadata=SIZE)
    # An upload body must bring upload_min_rate bytes/s over every upload_stall_seconds spent
    # waiting on it (so at least one byte in that time), else 408: a stalled or trickling
    # body must not hold an upload slot. Each user encodes at most upload_slots_per_user
    # slots of uploads at once (of the validator's two); more wait their turn. An upload
    # declared smaller than a segment takes only its share of a slot (uploads.UploadSlots).
    upload_stall_seconds: float = 30.0
    upload_min_rate: int = field(default=16 * 2**10, metadata=SIZE)
    upload_slots_per_user: int = 1
    # Segments held for transfers at once, uploads and downloads together, and per user: an
    # upload asks for its pipeline's whole window (a shallower one when that is what is free),
    # a download for each segment it fetches or sends. A reader that reads slowly or not at
    # all holds its share, never more; one that takes under upload_min_rate over
    # upload_stall_seconds spent waiting on it (the pace an upload's body must keep) is cut
    # off. 0: automatic, 192 MiB (one upload at full depth, 160 MiB at 4-of-8, beside one
    # download) or, with larger segments, what one upload at its least depth and two
    # download segments take. The per-user part: 0 is the whole.
    transfer_memory: int = field(default=0, metadata=SIZE)
    transfer_memory_per_user: int = field(default=0, metadata=SIZE)
    signature_window_ms: int = 8_000
    # The chain: when set, the validator registers, places on the metagraph's miners
    # (besides any listed above) and sends weights there. e.g. http://127.0.0.1:9944
    chain_url: str = ""
    # Or subtensor: network (finney, test, local or a ws:// URL) and netuid. A hotkey with no
    # UID there is registered only with yes, or after a confirmation on a terminal at start.
    network: str = ""
    netuid: int | None = None
    yes: bool = False
    # On a chain the validator announces its address as its axon, as a miner does:
    # external_host/external_port when it is reached elsewhere than where it listens.
    external_host: str = ""
    external_port: int | None = None
    metagraph_seconds: float = 30.0
    weights_seconds: float = 60.0  # how often weights go to the chain
    # Challenges: a round every challenge_seconds, up to challenge_batch shards per miner,
    # challenge_leaves leaves each; the answer deadline is max(floor, rtt + bytes/min_rate).
    challenge_seconds: float = 30.0
    challenge_batch: int = 64
    challenge_leaves: int = 8
    challenge_floor: float = 2.0
    challenge_min_rate: int = field(default=2**20, metadata=SIZE)  # bytes per second
    # Each round, each miner has a 1 in retrieval_every chance of a whole-shard read at a
    # random moment before the next round (checks it serves what it proves it holds).
    retrieval_every: int = 10
    containment_rechecks: int = 3  # rechecks before a timeout counts as a failure
    reputation_lambda: float = 0.999
    # Integrity score (bytes that passed, weighted by what the miner holds) below which a
    # miner is disqualified for good: 0.95 catches a loss of 5% of its data. See scoring.py.
    disqualify_below: float = 0.95
    # Timeout or serving score below which a miner is suspended (weight 0, nothing placed;
    # suspended for not serving, its shares are repaired elsewhere); after suspend_seconds
    # it starts over on probation.
    suspend_below: float = 0.6
    suspend_seconds: float = 3600.0
    capacity_window: float = 3600.0  # seconds over which verified bytes are averaged
    # Synthetic data: this share of every miner's capacity is filled with objects the
    # validator generates from a secret seed, so capacity is proven, not claimed.
    # Repair: every repair_seconds, segments whose health (healthy shards - k) is below
    # repair_threshold (unset: m - k, i.e. as soon as a shard is lost) get their lost shares
    # rebuilt on new miners; a miner unseen for repair_unseen_after seconds counts as gone.
    repair_seconds: float = 30.0
    repair_threshold: int | None = None
    repair_unseen_after: float = 3 * 3600.0
    repair_max_segments: int = 32
    synthetic_share: float = 0.0
    synthetic_object_size: int = field(default=64 * 2**20, metadata=SIZE)
    # The S3 API (validator/s3/): off unless a port is set; TLS with a certificate (PEM).
    s3_port: int | None = None
    s3_tls_cert: str = ""
    s3_tls_key: str = ""
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"

    def __post_init__(self) -> None:
        self._check_lists()
        self._check_erasure()
        self._check_chain()
        if not 0.0 <= self.synthetic_share < 1.0:
            raise FieldError("synthetic_share", f"a fraction in [0, 1), got {self.synthetic_share}")
        if not 0.0 < self.reputation_lambda <= 1.0:
            raise FieldError("reputation_lambda", f"is in (0, 1], got {self.reputation_lambda}")
        for name in ("challenge_seconds", "weights_seconds", "metagraph_seconds", "repair_seconds"):
            if not getattr(self, name) > 0:
                raise FieldError(name, "must be positive")
        if not 0.0 < self.disqualify_below < 1.0 or not 0.0 < self.suspend_below < 1.0:
            raise ValueError("disqualify_below and suspend_below are scores in (0, 1)")
        if self.placement_unproven_bytes <= 0:
            raise FieldError("placement_unproven_bytes", "must be positive: a newcomer needs room")
        if not 0 <= self.placement_network_prefix <= 32:
            raise FieldError("placement_network_prefix", "an IPv4 prefix length, 0 (off) to 32")
        if not self.upload_stall_seconds > 0 or self.upload_min_rate < 0:
            raise ValueError("upload_stall_seconds must be positive, upload_min_rate >= 0")
        if self.upload_slots_per_user < 1:
            raise FieldError("upload_slots_per_user", "must be >= 1")
        least = self._least_upload_window()
        for name in ("transfer_memory", "transfer_memory_per_user"):
            if 0 < getattr(self, name) < least:
                raise FieldError(
                    name,
                    f"at least {least / 2**20:.0f}MiB: one upload's segments in hand at "
                    f"{self.k}-of-{self.m} with {self.segment_size / 2**20:g}MiB segments "
                    "(or smaller segments: segment_size)",
                )
        if self.challenge_batch < 1 or self.challenge_leaves < 1 or self.retrieval_every < 1:
            raise ValueError("challenge_batch, challenge_leaves and retrieval_every are >= 1")

    def _least_upload_window(self) -> int:
        """The most one upload holds at its least depth (validator-sealed, length unknown)."""
        return upload_window(self._params, LEAST_DEPTH, size=None, presealed=False, seals=True)

    @property
    def _params(self) -> ErasureParams:
        return ErasureParams(k=self.k, m=self.m, segment_size=self.segment_size)

    @property
    def transfer_budget(self) -> tuple[int, int]:
        """(bytes in all, bytes per user) of the transfer budget, 0s resolved."""
        needed = self._least_upload_window() + 2 * download_charge(self._params)
        automatic = max(DEFAULT_TRANSFER_MEMORY, needed)
        total = self.transfer_memory or automatic
        return total, min(total, self.transfer_memory_per_user or total)

    def _check_chain(self) -> None:
        choice = chain_choice_error(self.chain_url, self.network, self.netuid)
        if choice:
            raise ValueError(choice)
        if self.external_port is not None and not 0 < self.external_port <= 65535:
            raise FieldError("external_port", f"{self.external_port} is not a TCP port")
        if self.chain_url or self.network:
            why = axon_error(self.axon[0], self.host, subtensor=bool(self.network), who="users")
            if why:
                raise ValueError(why)

    @property
    def axon(self) -> tuple[str, int]:
        """(host, port) announced on the chain; a bare IPv6 address gets its brackets."""
        return axon_address(self.host, self.port, self.external_host, self.external_port)

    def _check_erasure(self) -> None:
        if not 1 <= self.k <= self.m <= MAX_SHARES:
            raise FieldError(
                "k" if self.k < 1 else "m",
                f"a segment is cut into k={self.k} of m={self.m} shares, so 1 <= k <= m <= "
                f"{MAX_SHARES}; e.g. --k 4 --m 8",
            )
        try:
            ErasureParams(self.k, self.m, self.segment_size, self.leaf_size, self.codec)
        except InvalidParamsError as exc:
            field = "leaf_size" if "leaf_size" in str(exc) else "segment_size"
            raise FieldError(field, str(exc)) from None

    def _check_lists(self) -> None:
        """Ports, and the users, tokens and miners lists, read now so a typo stops the start
        at once (before the database is migrated)."""
        for name in ("port", "s3_port"):
            port = getattr(self, name)
            if port is not None and not 0 <= port <= 65535:
                raise FieldError(name, f"{port} is not a TCP port (0..65535)")
        for entry in self.users:
            _, hotkey = parse_user(entry, "users")
            if not is_valid_ss58_address(hotkey):
                raise FieldError("users", f"{hotkey!r} in {entry!r} is not an ss58 hotkey")
        for entry in self.tokens:
            parse_user(entry, "tokens", "name=token")
        for entry in self.miners:
            hotkey, _, _ = parse_miner(entry)
            if not is_valid_ss58_address(hotkey):
                raise FieldError("miners", f"{hotkey!r} in {entry!r} is not an ss58 hotkey")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'validator.sqlite'}"


def parse_user(entry: str, field: str = "users", form: str = "name=ss58hotkey") -> tuple[str, str]:
    """``name=value`` (a user's hotkey or a script's token)."""
    name, sep, value = entry.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise FieldError(field, f"{entry!r} is not {form}; separate entries with commas")
    return name.strip(), value.strip()


def parse_miner(entry: str) -> tuple[str, str, int]:
    """``ss58hotkey@host:port``."""
    hotkey, sep, address = entry.partition("@")
    host, colon, port = address.rpartition(":")
    if not sep or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FieldError(
            "miners", f"{entry!r} is not ss58hotkey@host:port, e.g. 5F...@127.0.0.2:8091"
        )
    return hotkey.strip(), host.strip("[]"), int(port)
