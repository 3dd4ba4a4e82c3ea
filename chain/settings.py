"""The local chain's settings, read once at start (see :mod:`protocol.settings`).

Environment variables are ``SUBNET_CHAIN_<FIELD>``, e.g. ``SUBNET_CHAIN_DATABASE_URL``.
The genesis file is read only when the database holds no chain yet; later starts keep the
stored chain (its stake, owner, tempo and issuance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chain.state import ChainParams
from protocol.settings import FieldError, LogFormat, LogLevel

ENV_PREFIX = "SUBNET_CHAIN"
DEFAULT_DATA_DIR = Path("~/.subnet/chain").expanduser()
DEFAULT_BLOCK_INTERVAL = 12.0


@dataclass(frozen=True, slots=True)
class ChainSettings:
    host: str = "127.0.0.1"
    port: int = 9944
    data_dir: Path = DEFAULT_DATA_DIR
    # Empty: a SQLite file in data_dir. Or postgresql+psycopg://user@host/db.
    database_url: str = ""
    genesis: Path | None = None
    # Seconds per block; unset: the genesis file's, else 12 s.
    block_interval: float | None = None
    max_uids: int = 256
    max_validators: int = 64
    immunity_period: int = 4096
    weights_rate_limit: int = 100
    version_key: int = 0
    signature_window_ms: int = 8_000
    log_format: LogFormat = "auto"
    log_level: LogLevel = "info"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise FieldError("port", f"{self.port} is not a TCP port (0..65535)")
        if self.block_interval is not None and not self.block_interval > 0:
            raise FieldError("block_interval", f"must be positive, got {self.block_interval}")
        self.params()  # fail at start, naming the bad value

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'chain.sqlite'}"

    def params(self) -> ChainParams:
        return ChainParams(
            max_uids=self.max_uids,
            max_validators=self.max_validators,
            immunity_period=self.immunity_period,
            weights_rate_limit=self.weights_rate_limit,
            version_key=self.version_key,
        )
