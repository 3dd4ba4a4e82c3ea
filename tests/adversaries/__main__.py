"""``python -m tests.adversaries BEHAVIOUR [subnet miner run flags...]``: a fake miner.

Run from the repository root. The flags are exactly those of ``subnet miner run`` (generated
from the same settings dataclass); see :mod:`tests.adversaries` for the behaviours.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import click
from aiohttp import web

from protocol.logs import configure_logging
from protocol.memory import return_large_buffers_to_the_os
from protocol.wallet import WalletError, load_hotkey
from storage_miner.app import make_app
from storage_miner.index import ShardIndex
from storage_miner.runner import build_store
from storage_miner.settings import ENV_PREFIX, MinerSettings
from subnet.miner_cmd import HELP
from subnet.settings_cli import settings_from_cli, settings_options
from tests.adversaries.behaviours import (
    Behaviour,
    BehaviourError,
    Rebuilding,
    adversary_settings,
    app_hooks,
    blob_server,
    log,
    make_service,
)


def serve(behaviour: Behaviour, settings: MinerSettings) -> None:
    """What ``storage_miner.runner.serve`` does, with the behaviour's service swapped in."""
    return_large_buffers_to_the_os()
    keypair = load_hotkey(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    index = ShardIndex(settings.data_dir / "index.sqlite")
    service = make_service(behaviour, settings, keypair, build_store(settings), index)
    app = make_app(service)
    app.middlewares.extend(app_hooks(behaviour))
    if isinstance(service, Rebuilding):

        async def blobs(_app: web.Application) -> AsyncIterator[None]:
            async with blob_server(service, settings.host):
                yield

        app.cleanup_ctx.append(blobs)
    log.warning(
        "adversarial miner starting",
        extra={
            "behaviour": behaviour.name,
            "parameters": behaviour,
            "hotkey": service.hotkey,
            "host": settings.host,
            "port": settings.port,
        },
    )
    web.run_app(app, host=settings.host, port=settings.port, print=None, handle_signals=True)


@click.command()
@click.argument("behaviour_spec", metavar="BEHAVIOUR")
@settings_options(MinerSettings, HELP, ENV_PREFIX)
def main(behaviour_spec: str, config_file: Path | None, **flags: object) -> None:
    """Serve a real miner whose behaviour is swapped for BEHAVIOUR.

    \b
    BEHAVIOUR is one of:
      honest         the plain MinerService
      drop:F         loses a hash-chosen fraction F of the shards it acknowledged
      bitflip:F      flips one bit in a fraction F of the leaves of every shard
      wrongproof     answers with another shard's leaves and proof
      replay         replays a shard's first answer to every later challenge
      slow:S         sleeps S seconds before challenge batches and shard GETs
      rebuild:K      reads K shard-sized bodies and zfec-decodes them before answering
      fakecap:BYTES  advertises --capacity (default 1 PiB) but keeps only BYTES of shards
      nulls          keeps nothing; answers every challenge batch with null entries
      noserve        holds and proves everything; refuses every shard GET (503)
      burst:S        like noserve, but serves in the S seconds after a challenge batch
      hide:F         loses a fraction F; hangs on batches and reads naming a lost shard
      turn:F@T       honest for T seconds after its first store, then loses a fraction F
      late:S         answers Merkle batches S seconds late; serves reads at once
      flood          answers every signed request with bytes that never end
    Adversaries default to --scrub-rate 0.
    """
    try:
        behaviour = Behaviour.parse(behaviour_spec)
    except BehaviourError as exc:
        raise click.BadParameter(str(exc), param_hint="BEHAVIOUR") from None
    settings = settings_from_cli(
        MinerSettings, ENV_PREFIX, config_file, adversary_settings(behaviour, flags)
    )
    configure_logging(settings.log_level, settings.log_format)
    try:
        serve(behaviour, settings)
    except WalletError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    main()
