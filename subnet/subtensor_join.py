"""Before a miner or validator started with ``--network`` serves: its hotkey has a UID.

Registering on subtensor burns TAO from the coldkey, so it happens only with ``--yes`` or
after the operator said yes on a terminal to a prompt that shows the cost; never silently.
Without either, the start fails with the cost and the two ways on. A network that cannot be
reached is only a warning: the service retries it, like an embedded chain that is down.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from chain.client import ChainRequestError

log = logging.getLogger(__name__)


def register_before_start(
    network: str,
    netuid: int,
    wallet: tuple[str, str, Path],
    *,
    yes: bool,
    interactive: bool | None = None,
    substrate: Any = None,
) -> int | None:
    """The hotkey's UID on ``netuid``, registering it first if agreed; None if unreachable.

    ``interactive`` (default: stdin is a terminal) allows the prompt; ``substrate`` is
    :class:`SubtensorChain`'s (the tests' in-memory subtensor).
    """
    from chain.subtensor import RegistrationQuote, SubtensorChain  # noqa: PLC0415 - the SDK

    asks = sys.stdin.isatty() if interactive is None else interactive

    def confirm(quote: RegistrationQuote) -> bool:
        click.echo(quote.describe(), err=True)
        if yes:
            click.echo("--yes given: registering.", err=True)
            return True
        return asks and click.confirm("Pay it and register?", default=False, err=True)

    async def register() -> int:
        name, hotkey, path = wallet
        chain = SubtensorChain(
            network,
            netuid,
            wallet_name=name,
            wallet_hotkey=hotkey,
            wallet_path=path,
            confirm=confirm,
            substrate=substrate,
        )
        async with chain:
            return await chain.register()

    try:
        uid = asyncio.run(register())
    except ChainRequestError as exc:
        if exc.code == "unreachable":
            log.warning(
                "subtensor unreachable at start; the service will retry",
                extra={"network": network, "error": exc.message},
            )
            return None
        raise click.ClickException(exc.message) from None
    log.info("registered on subtensor", extra={"network": network, "netuid": netuid, "uid": uid})
    return uid
