"""Hotkeys on disk through the real bittensor_wallet, and the ``subnet wallet`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bittensor_wallet import Keypair
from click.testing import CliRunner

from protocol.epistula import EpistulaVerifier, body_sha256_hex, sign_headers
from protocol.wallet import WalletError, create_wallet, hotkey_file, hotkey_info, load_hotkey
from subnet.wallet_cmd import wallet


def test_created_hotkey_loads_back_and_signs(tmp_path: Path, bob: Keypair) -> None:
    created = create_wallet("miner1", "default", tmp_path)
    loaded = load_hotkey("miner1", "default", tmp_path)
    assert loaded.ss58_address == created.ss58_address
    assert hotkey_file("miner1", "default", tmp_path) == tmp_path / "miner1/hotkeys/default"
    assert (tmp_path / "miner1/coldkeypub.txt").is_file()
    # The loaded key has its secret: it can sign a request that verifies.
    headers = sign_headers(
        loaded, body_hash=body_sha256_hex(b""), signed_for=bob.ss58_address, now_ms=1
    )
    result = EpistulaVerifier().verify(
        headers,
        body_sha256_hex=body_sha256_hex(b""),
        now_ms=1,
        expected_signed_for=bob.ss58_address,
    )
    assert result.signed_by == created.ss58_address


def test_hotkey_file_is_private(tmp_path: Path) -> None:
    create_wallet("w", "h", tmp_path)
    assert hotkey_file("w", "h", tmp_path).stat().st_mode & 0o077 == 0


def test_second_hotkey_keeps_the_wallets_coldkey(tmp_path: Path) -> None:
    create_wallet("w", "first", tmp_path)
    coldkey = hotkey_info("w", "first", tmp_path).coldkey_ss58_address
    second = create_wallet("w", "second", tmp_path)
    info = hotkey_info("w", "second", tmp_path)
    assert coldkey is not None
    assert info.coldkey_ss58_address == coldkey
    assert info.ss58_address == second.ss58_address
    assert second.ss58_address != hotkey_info("w", "first", tmp_path).ss58_address


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    original = create_wallet("w", "h", tmp_path)
    with pytest.raises(WalletError, match=r"already exists.*--overwrite"):
        create_wallet("w", "h", tmp_path)
    assert load_hotkey("w", "h", tmp_path).ss58_address == original.ss58_address
    replaced = create_wallet("w", "h", tmp_path, overwrite=True)
    assert replaced.ss58_address != original.ss58_address
    assert load_hotkey("w", "h", tmp_path).ss58_address == replaced.ss58_address


def test_missing_wallet_names_the_command_that_creates_it(tmp_path: Path) -> None:
    with pytest.raises(WalletError) as info:
        load_hotkey("nobody", "default", tmp_path)
    assert f"subnet wallet create --name nobody --hotkey default --path {tmp_path}" in str(
        info.value
    )


@pytest.mark.parametrize("name", ["", "..", "a/b", "../escape"])
def test_names_must_not_be_paths(tmp_path: Path, name: str) -> None:
    with pytest.raises(WalletError, match="plain name"):
        create_wallet(name, "default", tmp_path)
    with pytest.raises(WalletError, match="plain name"):
        load_hotkey("w", name, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the command line ----------------------------------------------------------------------


def test_cli_create_json_then_show(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--name", "v1", "--hotkey", "hk", "--path", str(tmp_path), "--json"]
    created = runner.invoke(wallet, ["create", *args])
    assert created.exit_code == 0, created.output
    payload = json.loads(created.output)
    assert payload["ss58_address"] == load_hotkey("v1", "hk", tmp_path).ss58_address
    assert payload["hotkey_file"] == str(tmp_path / "v1/hotkeys/hk")
    assert payload["coldkey_ss58_address"]
    shown = runner.invoke(wallet, ["show", *args])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == payload


def test_cli_create_human_output(tmp_path: Path) -> None:
    result = CliRunner().invoke(wallet, ["create", "--name", "m", "--path", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert load_hotkey("m", "default", tmp_path).ss58_address in result.output


def test_cli_errors_are_one_line_with_the_fix(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--name", "m", "--hotkey", "h", "--path", str(tmp_path)]
    missing = runner.invoke(wallet, ["show", *args])
    assert missing.exit_code == 1
    assert "subnet wallet create --name m --hotkey h" in missing.output
    assert "Traceback" not in missing.output
    assert runner.invoke(wallet, ["create", *args]).exit_code == 0
    again = runner.invoke(wallet, ["create", *args])
    assert again.exit_code == 1
    assert "--overwrite" in again.output
    assert "Traceback" not in again.output


def test_cli_help_teaches(tmp_path: Path) -> None:
    result = CliRunner().invoke(wallet, ["--help"])
    assert result.exit_code == 0
    assert "subnet wallet create --name" in result.output
    create_help = CliRunner().invoke(wallet, ["create", "--help"])
    assert "btcli" in create_help.output
    assert "--overwrite" in create_help.output
