"""The miner's settings, read once at start (see :mod:`protocol.settings` for precedence).

Environment variables are ``SUBNET_MINER_<FIELD>``, e.g. ``SUBNET_MINER_CAPACITY=500GiB`` or
``SUBNET_MINER_S3_SECRET_KEY``; credentials belong there, not in flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bittensor_wallet.utils import is_valid_ss58_address

from chain.axon import axon_address, axon_error
from chain.networks import chain_choice_error
from protocol.settings import SIZE, FieldError, LogFormat, LogLevel
from protocol.wallet import DEFAULT_WALLET_PATH

ENV_PREFIX = "SUBNET_MINER"
DEFAULT_DATA_DIR = Path("~/.subnet/miner").expanduser()


@dataclass(frozen=True, slots=True)
class MinerSettings:
    wallet_name: str = "miner"
    wallet_hotkey: str = "default"
    wallet_path: Path = DEFAULT_WALLET_PATH
    host: str = "127.0.0.1"
    port: int = 8091
    data_dir: Path = DEFAULT_DATA_DIR
    capacity: int = field(default=10 * 2**30, metadata=SIZE)
    backend: Literal["fs", "s3"] = "fs"
    s3_endpoint: str = "127.0.0.1:8333"
    s3_bucket: str = "subnet-shards"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
    # Which hotkeys may store and challenge: this static allowlist, plus (with chain_url) the
    # metagraph's permitted validators.
    validators: tuple[str, ...] = ()
    # The chain: when set, the miner registers its hotkey, announces external_host (default:
    # host) and port as its axon, and refreshes the permitted validators every
    # metagraph_seconds. e.g. http://127.0.0.1:9944
    chain_url: str = ""
    # Or subtensor: network (finney, test, local or a ws:// URL) and netuid. A hotkey with no
    # UID there is registered only with yes, or after a confirmation on a terminal at start.
    network: str = ""
    netuid: int | None = None
    yes: bool = False
    # The address announced as the axon when it is not where the miner listens (a public IP
    # in front of 0.0.0.0, a port forwarded by a NAT or a proxy).
    external_host: str = ""
    external_port: int | None = None
    metagraph_seconds: float = 30.0
    max_shard_size: int = field(default=256 * 2**20, metadata=SIZE)
    trash_grace_seconds: float = 3600.0
    scrub_rate: int = field(default=32 * 2**20, metadata=SIZE)  # bytes per second
    tree_cache: int = field(default=64 * 2**20, metadata=SIZE)
    signature_window_ms: int = 8_000
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise FieldError("capacity", "must be positive, e.g. --capacity 500GiB")
        if not 0 <= self.port <= 65535:
            raise FieldError("port", f"{self.port} is not a TCP port (0..65535)")
        if not self.metagraph_seconds > 0:
            raise FieldError("metagraph_seconds", f"must be positive, got {self.metagraph_seconds}")
        for hotkey in self.validators:
            if not is_valid_ss58_address(hotkey):
                raise FieldError("validators", f"{hotkey!r} is not an ss58 hotkey")
        choice = chain_choice_error(self.chain_url, self.network, self.netuid)
        if choice:
            raise ValueError(choice)
        if self.external_port is not None and not 0 < self.external_port <= 65535:
            raise FieldError("external_port", f"{self.external_port} is not a TCP port")
        if self.on_chain:
            why = axon_error(
                self.axon[0], self.host, subtensor=bool(self.network), who="validators"
            )
            if why:
                raise ValueError(why)

    @property
    def on_chain(self) -> bool:
        """Whether the miner joins a chain (the embedded one or subtensor)."""
        return bool(self.chain_url or self.network)

    @property
    def axon(self) -> tuple[str, int]:
        """(host, port) announced on the chain; a bare IPv6 address gets its brackets."""
        return axon_address(self.host, self.port, self.external_host, self.external_port)
