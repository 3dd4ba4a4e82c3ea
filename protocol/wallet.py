"""Hotkeys on disk, in the standard Bittensor layout ``<path>/<name>/hotkeys/<hotkey>``.

Services sign with an unencrypted hotkey (btcli's default for hotkeys) so they can start
without a prompt. :func:`create_wallet` also makes an unencrypted coldkey when the wallet has
none, because a local net needs one to register; a coldkey that holds real funds should be
made with ``btcli wallet new_coldkey``, which encrypts it with a password.

Nothing here reads stdin: it runs in CI and under service managers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bittensor_wallet import Keypair, Wallet
from bittensor_wallet.errors import KeyFileError

DEFAULT_WALLET_PATH: Final = Path("~/.bittensor/wallets")


class WalletError(Exception):
    """A wallet or hotkey that can't be used; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class HotkeyInfo:
    """Where a hotkey lives and what it is, without its secret."""

    name: str
    hotkey: str
    ss58_address: str
    hotkey_file: Path
    coldkey_ss58_address: str | None  # None when the wallet has no coldkeypub file


def _create_command(name: str, hotkey: str, path: Path) -> str:
    command = f"subnet wallet create --name {name} --hotkey {hotkey}"
    if path != DEFAULT_WALLET_PATH.expanduser():
        command += f" --path {path}"
    return command


def _check_component(kind: str, value: str) -> None:
    # Names become directory and file names: keep them to one path component.
    if not value or value in {".", ".."} or "/" in value or "\\" in value or "\0" in value:
        raise WalletError(f"wallet {kind} {value!r} must be a plain name, not a path")


def _open(name: str, hotkey: str, path: Path | str) -> tuple[Wallet, Path]:
    _check_component("name", name)
    _check_component("hotkey", hotkey)
    root = Path(path).expanduser()
    return Wallet(name=name, hotkey=hotkey, path=str(root)), root


def hotkey_file(name: str, hotkey: str, path: Path | str = DEFAULT_WALLET_PATH) -> Path:
    """The file that holds hotkey ``hotkey`` of wallet ``name``."""
    wallet, _ = _open(name, hotkey, path)
    return Path(wallet.hotkey_file.path)


def load_hotkey(name: str, hotkey: str, path: Path | str = DEFAULT_WALLET_PATH) -> Keypair:
    """The signing keypair of a hotkey; :class:`WalletError` if it is missing or unusable."""
    wallet, root = _open(name, hotkey, path)
    keyfile = wallet.hotkey_file
    if not keyfile.exists_on_device():
        raise WalletError(
            f"no hotkey at {keyfile.path}: create it with `{_create_command(name, hotkey, root)}`"
        )
    if not keyfile.is_readable():
        raise WalletError(f"hotkey file {keyfile.path} is not readable by this user")
    if keyfile.is_encrypted():
        raise WalletError(
            f"hotkey file {keyfile.path} is encrypted; services need an unencrypted hotkey "
            "to start unattended: regenerate it without a password (btcli wallet regen_hotkey)"
        )
    try:
        return wallet.get_hotkey()
    except KeyFileError as exc:
        raise WalletError(f"cannot read hotkey file {keyfile.path}: {exc}") from None


def hotkey_info(name: str, hotkey: str, path: Path | str = DEFAULT_WALLET_PATH) -> HotkeyInfo:
    """What :func:`load_hotkey` would load, plus the wallet's coldkey address if known."""
    keypair = load_hotkey(name, hotkey, path)
    wallet, _ = _open(name, hotkey, path)
    coldkey: str | None = None
    if wallet.coldkeypub_file.exists_on_device():
        try:
            coldkey = wallet.get_coldkeypub().ss58_address
        except KeyFileError as exc:
            raise WalletError(
                f"cannot read {wallet.coldkeypub_file.path}: {exc}; regenerate it with "
                "btcli wallet regen_coldkeypub"
            ) from None
    return HotkeyInfo(
        name=name,
        hotkey=hotkey,
        ss58_address=keypair.ss58_address,
        hotkey_file=Path(wallet.hotkey_file.path),
        coldkey_ss58_address=coldkey,
    )


def create_wallet(
    name: str,
    hotkey: str,
    path: Path | str = DEFAULT_WALLET_PATH,
    *,
    overwrite: bool = False,
) -> Keypair:
    """Create an unencrypted hotkey, and an unencrypted coldkey if the wallet has none.

    Refuses to replace an existing hotkey unless ``overwrite``: the old key would be lost.
    """
    wallet, _ = _open(name, hotkey, path)
    keyfile = wallet.hotkey_file
    # Checked here because bittensor_wallet would ask on stdin instead.
    if keyfile.exists_on_device() and not overwrite:
        raise WalletError(
            f"hotkey file {keyfile.path} already exists; pass --overwrite (overwrite=True) to "
            "replace it, which loses the old key unless you saved its mnemonic"
        )
    has_coldkey = wallet.coldkey_file.exists_on_device()
    has_coldkeypub = wallet.coldkeypub_file.exists_on_device()
    try:
        if not has_coldkey and not has_coldkeypub:
            wallet.create_new_coldkey(use_password=False, overwrite=False, suppress=True)
        wallet.create_new_hotkey(use_password=False, overwrite=overwrite, suppress=True)
    except KeyFileError as exc:
        raise WalletError(f"cannot write wallet {name!r} under {path}: {exc}") from None
    return load_hotkey(name, hotkey, path)


@dataclass(frozen=True, slots=True)
class WalletEntry:
    """One hotkey found under a wallets folder; ``problem`` says why it cannot be used."""

    name: str
    hotkey: str
    ss58_address: str | None
    coldkey_ss58_address: str | None
    problem: str | None


def list_hotkeys(path: Path | str = DEFAULT_WALLET_PATH) -> list[WalletEntry]:
    """Every hotkey in btcli's layout under ``path`` (``<name>/hotkeys/<hotkey>``), by
    wallet then hotkey name; the ``...pub.txt`` files beside them are not hotkeys."""
    root = Path(path).expanduser()
    found = []
    for folder in sorted(root.glob("*/hotkeys")):
        for keyfile in sorted(folder.iterdir()):
            if not keyfile.is_file() or keyfile.name.endswith("pub.txt"):
                continue
            name, hotkey = folder.parent.name, keyfile.name
            try:
                info = hotkey_info(name, hotkey, root)
            except WalletError as exc:
                found.append(WalletEntry(name, hotkey, None, None, str(exc)))
                continue
            found.append(
                WalletEntry(name, hotkey, info.ss58_address, info.coldkey_ss58_address, None)
            )
    return found
