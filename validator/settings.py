"""The validator's settings, read once at start (see :mod:`protocol.settings`).

Environment variables are ``SUBNET_VALIDATOR_<FIELD>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protocol.settings import SIZE
from protocol.wallet import DEFAULT_WALLET_PATH

ENV_PREFIX = "SUBNET_VALIDATOR"
DEFAULT_DATA_DIR = Path("~/.subnet/validator").expanduser()


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
    extra_receipts: int = 1
    max_object_size: int = field(default=1 << 40, metadata=SIZE)
    signature_window_ms: int = 8_000

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'validator.sqlite'}"
