"""``subnet wallet``: make and inspect the hotkeys that miners and validators sign with."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from protocol.wallet import (
    DEFAULT_WALLET_PATH,
    HotkeyInfo,
    WalletError,
    create_wallet,
    hotkey_info,
    list_hotkeys,
)
from subnet.tables import table_console

_name_option = click.option(
    "--name", required=True, help="Wallet name: the folder under --path, as btcli calls it."
)
_hotkey_option = click.option(
    "--hotkey",
    default="default",
    show_default=True,
    help="Hotkey name: the file under <wallet>/hotkeys/.",
)
_path_option = click.option(
    "--path",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_WALLET_PATH,
    show_default=True,
    help="Folder that holds wallets (btcli's --wallet.path).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group()
def wallet() -> None:
    """Make and inspect sr25519 hotkeys, in btcli's layout <path>/<name>/hotkeys/<hotkey>.

    A service signs every request with its hotkey (Epistula v2); the ss58 address shown here
    is what other nodes know it by. Wallets made here work with btcli, and btcli's work here.

    \b
    Start here:
      subnet wallet create --name miner1 --hotkey default
      subnet wallet show --name miner1 --hotkey default
      subnet wallet list
    """


@wallet.command()
@_name_option
@_hotkey_option
@_path_option
@click.option("--overwrite", is_flag=True, help="Replace an existing hotkey (the old key is lost).")
@_json_option
def create(name: str, hotkey: str, path: Path, overwrite: bool, as_json: bool) -> None:
    """Create an unencrypted hotkey, plus an unencrypted coldkey if the wallet has none.

    Services load the hotkey without a prompt, so it has no password. The file also holds
    the hotkey's mnemonic: back it up and keep it private.

    The coldkey made here is for local nets. For a coldkey that will hold real TAO, make it
    first with `btcli wallet new_coldkey`, which encrypts it with a password; this command
    then only adds the hotkey.
    """
    try:
        create_wallet(name, hotkey, path, overwrite=overwrite)
        info = hotkey_info(name, hotkey, path)
    except WalletError as exc:
        raise click.ClickException(str(exc)) from None
    _print(info, as_json, title="created hotkey")


@wallet.command()
@_name_option
@_hotkey_option
@_path_option
@_json_option
def show(name: str, hotkey: str, path: Path, as_json: bool) -> None:
    """Show a hotkey's ss58 address, its file, and the wallet's coldkey address."""
    try:
        info = hotkey_info(name, hotkey, path)
    except WalletError as exc:
        raise click.ClickException(str(exc)) from None
    _print(info, as_json, title="hotkey")


@wallet.command(name="list")
@_path_option
@_json_option
def list_wallets(path: Path, as_json: bool) -> None:
    """List the wallets and hotkeys under --path, each with its ss58 address."""
    entries = list_hotkeys(path)
    if as_json:
        click.echo(json.dumps({"path": str(path.expanduser()),
                               "hotkeys": [asdict(e) for e in entries]}))  # fmt: skip
        return
    if not entries:
        click.echo(f"no hotkeys under {path}: make one with subnet wallet create --name NAME")
        return
    table = Table()
    for column in ("wallet", "hotkey", "ss58 address", "coldkey"):
        table.add_column(column)
    for e in entries:
        address = e.ss58_address or f"[red]{e.problem}[/]"
        table.add_row(e.name, e.hotkey, address, e.coldkey_ss58_address or "-")
    table_console().print(table)


def _print(info: HotkeyInfo, as_json: bool, *, title: str) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": info.name,
                    "hotkey": info.hotkey,
                    "ss58_address": info.ss58_address,
                    "hotkey_file": str(info.hotkey_file),
                    "coldkey_ss58_address": info.coldkey_ss58_address,
                },
                indent=2,
            )
        )
        return
    console = Console()
    console.print(f"[bold]{title}[/] {info.name}/{info.hotkey}")
    console.print(f"  ss58 address  [green]{info.ss58_address}[/]", highlight=False)
    console.print(f"  file          {info.hotkey_file}", highlight=False)
    coldkey = info.coldkey_ss58_address or "[dim](no coldkeypub file)[/]"
    console.print(f"  coldkey       {coldkey}", highlight=False)
