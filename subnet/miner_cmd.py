"""``subnet miner``: run a storage miner."""

from __future__ import annotations

from pathlib import Path

import click

from protocol.listen import CannotListen
from protocol.logs import configure_logging
from protocol.memory import reexec_with_huge_pages
from protocol.wallet import WalletError
from storage_miner.settings import ENV_PREFIX, MinerSettings
from subnet.settings_cli import LOG_HELP, SettingError, settings_from_cli, settings_options

HELP = {
    "wallet_name": "Wallet holding the miner's hotkey.",
    "wallet_hotkey": "Hotkey name inside the wallet.",
    "wallet_path": "Wallets folder.",
    "host": "Address to listen on.",
    "port": "Port to listen on.",
    "data_dir": "Shards (fs backend), the index and staging files.",
    "capacity": "Advertised capacity, e.g. 500GiB; writes past it get 507.",
    "backend": "Where shard bytes live: fs or s3.",
    "s3_endpoint": "S3 host:port (s3 backend).",
    "s3_bucket": "S3 bucket, created if missing.",
    "s3_access_key": "S3 access key (prefer $SUBNET_MINER_S3_ACCESS_KEY).",
    "s3_secret_key": "S3 secret key (prefer $SUBNET_MINER_S3_SECRET_KEY).",
    "s3_secure": "Use https to reach S3.",
    "validators": "Comma-separated validator hotkeys allowed to store and challenge (with "
    "--chain-url, besides the metagraph's permitted validators).",
    "chain_url": "The chain to register on and announce the axon to, e.g. http://127.0.0.1:9944.",
    "network": "Subtensor instead of --chain-url: finney, test, local or a ws:// URL.",
    "netuid": "The subnet to join on --network.",
    "yes": "Register the hotkey on --network without asking (burns the cost from the coldkey).",
    "external_host": "Address announced on the chain (default: --host; an IP for subtensor).",
    "metagraph_seconds": "How often the permitted validators are read from the chain.",
    "max_shard_size": "Largest shard accepted.",
    "trash_grace_seconds": "How long deleted shards stay restorable.",
    "scrub_rate": "Scrubber read budget per second, e.g. 32MiB; 0 turns it off.",
    "tree_cache": "Memory for cached Merkle trees.",
    "signature_window_ms": "Accepted clock skew of signed requests.",
    **LOG_HELP,
}


@click.group()
def miner() -> None:
    """Run a storage miner: hold shards for validators and prove it."""


@miner.command()
@settings_options(MinerSettings, HELP, ENV_PREFIX)
def run(config_file: Path | None, **flags: object) -> None:
    """Serve the miner's HTTP API until interrupted.

    Settings come from flags, then SUBNET_MINER_<NAME> environment variables, then --config.

    With --chain-url (or --network) the miner registers its hotkey, announces --external-host
    (else --host) and --port as its axon, and serves every validator holding a permit on the
    metagraph, as well as those in --validators. It retries while the chain is unreachable.

    \b
    Examples:
      subnet wallet create --name miner1
      subnet miner run --wallet-name miner1 --capacity 500GiB \\
          --validators 5F...,5G... --data-dir /srv/miner1
      subnet miner run --wallet-name miner1 --host 0.0.0.0 --external-host 203.0.113.7 \\
          --chain-url http://127.0.0.1:9944 --data-dir /srv/miner1
      subnet miner run --wallet-name miner1 --host 0.0.0.0 --external-host 203.0.113.7 \\
          --network test --netuid 42 --data-dir /srv/miner1

    With --network (subtensor, docs/bittensor.md) an unregistered hotkey is registered at
    start only after you confirm the cost on the terminal, or with --yes.
    """
    reexec_with_huge_pages()  # once, first: see protocol/memory.py
    settings = settings_from_cli(MinerSettings, ENV_PREFIX, config_file, flags)
    if not settings.on_chain and not settings.validators:
        raise SettingError(
            "validators: none, and no chain either, so this miner would serve nobody: give "
            "--chain-url URL (or --network and --netuid) to serve the metagraph's validators, "
            "or --validators HOTKEY,..."
        )
    configure_logging(settings.log_level, settings.log_format)
    try:
        if settings.network:
            from subnet.subtensor_join import register_before_start  # noqa: PLC0415

            assert settings.netuid is not None  # the settings check it
            wallet = (settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
            register_before_start(settings.network, settings.netuid, wallet, yes=settings.yes)
        from storage_miner.runner import serve  # noqa: PLC0415 - only once the settings are sound

        serve(settings)
    except CannotListen as exc:
        raise SettingError(str(exc)) from None
    except WalletError as exc:
        raise click.ClickException(str(exc)) from None
