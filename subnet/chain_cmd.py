"""``subnet chain``: run the local chain; ``subnet metagraph`` and ``subnet rewards`` read it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import click
from bittensor_wallet.utils import is_valid_ss58_address
from rich.table import Table

from chain.emission import RAO_PER_TAO
from chain.genesis import Genesis, GenesisError, tao_to_rao, write_genesis
from chain.settings import ENV_PREFIX, ChainSettings
from chain.state import ChainError
from protocol.listen import CannotListen
from protocol.logs import configure_logging
from subnet.settings_cli import LOG_HELP, SettingError, settings_from_cli, settings_options
from subnet.tables import table_console

DEFAULT_URL = "http://127.0.0.1:9944"

HELP = {
    "host": "Address to listen on.",
    "port": "Port to listen on.",
    "data_dir": "Where the SQLite database lives (unless --database-url).",
    "database_url": "SQLAlchemy URL, e.g. postgresql+psycopg://postgres@127.0.0.1/chain.",
    "genesis": "Genesis file (TOML or JSON); read only when the database has no chain yet.",
    "block_interval": "Seconds per block (default: the genesis file's, else 12).",
    "max_uids": "UIDs on the subnet.",
    "max_validators": "Validator permits, given to the top stakers.",
    "immunity_period": "Blocks a new registration cannot be pruned.",
    "weights_rate_limit": "Blocks between two weight settings by one validator.",
    "version_key": "The weights version key validators must send.",
    "signature_window_ms": "Accepted clock skew of signed requests.",
    **LOG_HELP,
}


@click.group()
def chain() -> None:
    """Run the local chain: registration, weights, Yuma and TAO emission, per epoch."""


@chain.command()
@settings_options(ChainSettings, HELP, ENV_PREFIX)
def run(config_file: Path | None, **flags: object) -> None:
    """Serve the local chain until interrupted, producing blocks.

    Settings come from flags, then SUBNET_CHAIN_<NAME> environment variables, then --config.

    \b
    Example (a fast local net):
      subnet chain genesis --out genesis.json --owner 5F... --stake 5G...=1000 \\
          --tempo 10 --block-interval 0.25
      subnet chain run --genesis genesis.json --data-dir /srv/chain
    """
    settings = settings_from_cli(ChainSettings, ENV_PREFIX, config_file, flags)
    configure_logging(settings.log_level, settings.log_format)
    try:
        from chain.runner import serve  # noqa: PLC0415 - only once the settings are sound

        serve(settings)
    except CannotListen as exc:
        raise SettingError(str(exc)) from None
    except (ChainError, GenesisError) as exc:
        raise click.ClickException(str(exc)) from None


@chain.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--owner", required=True, help="The subnet owner's hotkey (ss58).")
@click.option("--stake", multiple=True, help="HOTKEY=TAO; repeat for each staker.")
@click.option("--issuance-tao", default="0", show_default=True, help="Issuance at block 0.")
@click.option("--tempo", default=360, show_default=True, help="Blocks per epoch.")
@click.option("--block-interval", default=12.0, show_default=True, help="Seconds per block.")
def genesis(
    out: Path, owner: str, stake: tuple[str, ...], issuance_tao: str, tempo: int,
    block_interval: float,
) -> None:  # fmt: skip
    """Write a genesis file for a local net."""
    stakes: dict[str, int] = {}
    try:
        _check_hotkey(owner, "--owner")
        for item in stake:
            hotkey, amount = _stake_item(item)
            stakes[hotkey] = amount
        made = Genesis(
            owner,
            stakes=stakes,
            issuance=tao_to_rao(issuance_tao, "--issuance-tao"),
            tempo=tempo,
            block_interval=block_interval,
        )
    except GenesisError as exc:
        raise SettingError(str(exc)) from None
    write_genesis(made, out)
    click.echo(f"wrote {out}: {len(stakes)} stakers, tempo {tempo}, {block_interval} s blocks")


def _stake_item(item: str) -> tuple[str, int]:
    hotkey, sep, amount = item.partition("=")
    if not sep or not hotkey:
        raise GenesisError(f"--stake {item!r}: use HOTKEY=TAO, e.g. 5F...=1000")
    _check_hotkey(hotkey, f"--stake {item}")
    return hotkey, tao_to_rao(amount, f"--stake {hotkey}")


def _check_hotkey(hotkey: str, where: str) -> None:
    if not is_valid_ss58_address(hotkey):
        raise GenesisError(
            f"{where}: {hotkey!r} is not an ss58 hotkey (subnet wallet create prints one)"
        )


def fetch(url: str, path: str, params: dict[str, str | int] | None = None) -> dict[str, Any]:
    async def get() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.get(url.rstrip("/") + path, params=params or None) as response,
        ):
            body = await response.json(content_type=None)
            if response.status >= 400:
                raise click.ClickException(f"{response.status}: {body.get('message', body)}")
            return body  # type: ignore[no-any-return]

    try:
        return asyncio.run(get())
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"cannot reach the chain at {url}: {exc}") from None


def tao(rao: int) -> str:
    return f"{rao / RAO_PER_TAO:,.9f}".rstrip("0").rstrip(".")


url_option = click.option(
    "--url", default=DEFAULT_URL, show_default=True, envvar="SUBNET_CHAIN_URL",
    help="The chain's base URL.",
)  # fmt: skip


@click.command()
@url_option
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document instead.")
def metagraph(url: str, as_json: bool) -> None:
    """Show the subnet's UIDs: hotkeys, stake, permits, axons and last epoch's outputs."""
    graph = fetch(url, "/v1/metagraph")
    if as_json:
        click.echo(json.dumps(graph, indent=2))
        return
    table = Table(title=f"Metagraph at block {graph['block']} (tempo {graph['tempo']})")
    for column in ("uid", "hotkey", "stake τ", "permit", "axon", "incentive", "dividends",
                   "trust", "consensus", "updated", "registered"):  # fmt: skip
        table.add_column(column, justify="left" if column in {"hotkey", "axon"} else "right")
    for n in graph["neurons"]:
        table.add_row(
            str(n["uid"]),
            n["hotkey"],
            tao(n["stake"]),
            "✓" if n["validator_permit"] else "",
            n["axon"] or "",
            f"{n['incentive']:.4f}",
            f"{n['dividends']:.4f}",
            f"{n['trust']:.4f}",
            f"{n['consensus']:.4f}",
            "" if n["last_update"] is None else str(n["last_update"]),
            str(n["registered_at"]),
        )
    table_console().print(table)


@click.command()
@url_option
@click.option("--epoch", type=int, help="Only this epoch.")
@click.option("--era", type=int, help="Only this halving era.")
@click.option("--hotkey", help="Only this hotkey.")
@click.option(
    "--last",
    type=click.IntRange(min=1),
    help="Only the last N closed epochs (the newest N the chain lists).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
def rewards(
    url: str, epoch: int | None, era: int | None, hotkey: str | None, last: int | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Show credits per hotkey, with the capacity and availability behind them, and the
    totals per halving era. Amounts are TAO (rao in --json)."""
    params: dict[str, str | int] = {}
    newest: int | None = None  # with --last: epochs closing after we asked are not shown
    if last is not None:
        if epoch is not None:
            raise click.UsageError("give --epoch or --last, not both")
        closed = [e["number"] for e in fetch(url, "/v1/epochs", {"limit": last})["epochs"]]
        # None closed yet: no credit can be that recent, so nothing is shown.
        params["since_epoch"] = min(closed, default=1 << 62)
        newest = max(closed, default=0)
    if epoch is not None:
        params["epoch"] = epoch
    if era is not None:
        params["era"] = era
    if hotkey is not None:
        params["hotkey"] = hotkey
    credits = fetch(url, "/v1/ledger", params)["credits"]
    if newest is not None:
        credits = [c for c in credits if c["epoch"] <= newest]
    per_era: dict[int, int] = {}
    for credit in credits:
        per_era[credit["era"]] = per_era.get(credit["era"], 0) + credit["amount"]
    if as_json:
        totals = {str(k): v for k, v in sorted(per_era.items())}
        click.echo(json.dumps({"credits": credits, "totals_per_era": totals}, indent=2))
        return
    table = Table(title="Credits")
    for column in ("epoch", "era", "uid", "hotkey", "amount τ", "incentive τ", "dividends τ",
                   "owner τ", "capacity", "availability"):  # fmt: skip
        table.add_column(column, justify="left" if column == "hotkey" else "right")
    for c in credits:
        table.add_row(
            str(c["epoch"]),
            str(c["era"]),
            "" if c["uid"] is None else str(c["uid"]),
            c["hotkey"],
            tao(c["amount"]),
            tao(c["incentive"]),
            tao(c["dividends"]),
            tao(c["owner"]),
            "" if c["capacity_bytes"] is None else f"{c['capacity_bytes'] / 2**30:,.2f} GiB",
            "" if c["availability"] is None else f"{c['availability']:.2%}",
        )
    console = table_console()
    console.print(table)
    eras = Table(title="Totals per halving era")
    eras.add_column("era", justify="right")
    eras.add_column("credited τ", justify="right")
    for number, amount in sorted(per_era.items()):
        eras.add_row(str(number), tao(amount))
    console.print(eras)
