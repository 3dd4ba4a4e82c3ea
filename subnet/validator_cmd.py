"""``subnet validator``: run a validator's gateway."""

from __future__ import annotations

from pathlib import Path

import click

from protocol.listen import CannotListen
from protocol.logs import configure_logging
from protocol.memory import reexec_with_huge_pages
from protocol.wallet import WalletError
from subnet.settings_cli import LOG_HELP, SettingError, settings_from_cli, settings_options
from validator.settings import ENV_PREFIX, ValidatorSettings

HELP = {
    "wallet_name": "Wallet holding the validator's hotkey.",
    "wallet_hotkey": "Hotkey name inside the wallet.",
    "wallet_path": "Wallets folder.",
    "host": "Address to listen on.",
    "port": "Port to listen on.",
    "data_dir": "Where the default SQLite database lives.",
    "database_url": "SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: SQLite).",
    "users": "Comma-separated name=ss58hotkey entries allowed to upload.",
    "tokens": "Comma-separated name=token API tokens for scripts (use $SUBNET_VALIDATOR_TOKENS).",
    "miners": "Comma-separated ss58hotkey@host:port miners to place shards on.",
    "k": "Shares needed to rebuild a segment.",
    "m": "Shares made per segment (one per miner).",
    "segment_size": "Segment size, e.g. 16MiB.",
    "leaf_size": "Merkle leaf size, e.g. 16KiB.",
    "extra_receipts": "r: a segment needs k + r miner receipts before it counts.",
    "max_object_size": "Largest object accepted.",
    "signature_window_ms": "Accepted clock skew of signed requests.",
    **LOG_HELP,
    "chain_url": "The chain to register on, take miners from and send weights to.",
    "network": "Subtensor instead of --chain-url: finney, test, local or a ws:// URL.",
    "netuid": "The subnet to validate on --network.",
    "yes": "Register the hotkey on --network without asking (burns the cost from the coldkey).",
    "metagraph_seconds": "How often miners are re-read from the metagraph.",
    "weights_seconds": "How often weights (with capacity and availability) go to the chain.",
    "challenge_seconds": "Seconds between challenge rounds.",
    "challenge_batch": "Shards challenged per miner per round (least recently first).",
    "challenge_leaves": "Merkle leaves asked per challenged shard.",
    "challenge_floor": "Shortest deadline in seconds: max(floor, rtt + bytes / min rate).",
    "challenge_min_rate": "Slowest acceptable answer rate, e.g. 1MiB (per second).",
    "retrieval_every": "Every Nth round, one whole shard per miner is fetched and hashed.",
    "containment_rechecks": "Full-retrieval rechecks before a timeout counts as a failure.",
    "reputation_lambda": "Forgetting factor of the Beta reputations (0..1].",
    "disqualify_below": "Wrong-answer score below which a miner is disqualified for good.",
    "capacity_window": "Seconds over which verified bytes are averaged for weights.",
    "repair_seconds": "Seconds between repair runs.",
    "repair_threshold": "Repair a segment when healthy shards - k falls below this (default m-k).",
    "repair_unseen_after": "Seconds a miner may go unseen before its shards count as lost.",
    "repair_max_segments": "Segments repaired per run at most.",
    "synthetic_share": "Share of miners' capacity to fill with synthetic data (0 = off).",
    "synthetic_object_size": "Size of each synthetic object, e.g. 64MiB.",
    "s3_port": "Serve the S3 API on this port too (off unless set; keys: subnet s3 keys).",
    "s3_tls_cert": "PEM certificate (chain) for the S3 port: serve it over HTTPS.",
    "s3_tls_key": "PEM private key of --s3-tls-cert, if not in the same file.",
}


@click.group()
def validator() -> None:
    """Run a validator: the gateway users upload to, and the miners' auditor."""


@validator.command()
@settings_options(ValidatorSettings, HELP, ENV_PREFIX)
def run(config_file: Path | None, **flags: object) -> None:
    """Serve the validator's gateway until interrupted.

    \b
    Every setting is also an env var (SUBNET_VALIDATOR_<NAME>) or a key in --config FILE.

    \b
    Examples:
      subnet validator run --wallet-name v1 --users alice=5F... \\
          --miners 5G...@127.0.0.2:8091,5H...@127.0.0.3:8091
      subnet validator run --wallet-name v1 --users alice=5F... \\
          --chain-url http://127.0.0.1:9944 --challenge-seconds 30
      subnet validator run --wallet-name v1 --users alice=5F... \\
          --network test --netuid 42

    \b
    With --network (subtensor, docs/bittensor.md) an unregistered hotkey is registered at
    start only after you confirm the cost on the terminal, or with --yes.
    """
    reexec_with_huge_pages()  # once, first: see protocol/memory.py
    settings = settings_from_cli(ValidatorSettings, ENV_PREFIX, config_file, flags)
    configure_logging(settings.log_level, settings.log_format)
    try:
        if settings.network:
            from subnet.subtensor_join import register_before_start  # noqa: PLC0415

            assert settings.netuid is not None  # the settings check it
            wallet = (settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
            register_before_start(settings.network, settings.netuid, wallet, yes=settings.yes)
        from validator.runner import serve  # noqa: PLC0415 - only once the settings are sound

        serve(settings)
    except CannotListen as exc:
        raise SettingError(str(exc)) from None
    except WalletError as exc:
        raise click.ClickException(str(exc)) from None
