"""The ``subnet`` command as a user runs it: a real process, real files."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from protocol.wallet import create_wallet
from subnet.cli import main

SUBNET = [sys.executable, "-m", "subnet"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SUBNET, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def test_help_names_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert {"demo", "wallet"} <= listed


def test_miner_run_explains_bad_settings_and_missing_wallets(tmp_path: Path) -> None:
    bad = run("miner", "run", "--capacity", "lots", "--wallet-path", str(tmp_path))
    assert bad.returncode == 2
    assert "capacity (from --capacity)" in bad.stderr
    missing = run("miner", "run", "--wallet-name", "nobody", "--wallet-path", str(tmp_path),
                  "--validators", "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY")  # fmt: skip
    assert missing.returncode == 1
    assert "subnet wallet create" in missing.stderr
    for result in (bad, missing):
        assert "Traceback" not in result.stderr


def test_a_service_takes_one_chain_and_says_so(tmp_path: Path) -> None:
    half = run("validator", "run", "--network", "test", "--wallet-path", str(tmp_path))
    assert half.returncode == 2
    assert "--network test needs --netuid" in half.stderr
    both = run(
        "miner", "run", "--chain-url", "http://127.0.0.1:9944", "--network", "test",
        "--netuid", "3", "--external-host", "203.0.113.7", "--wallet-path", str(tmp_path),
    )  # fmt: skip
    assert both.returncode == 2
    assert "not both" in both.stderr
    for result in (half, both):
        assert "Traceback" not in result.stderr


def test_upload_and_download_help_say_where_keys_live_and_what_a_rerun_does() -> None:
    upload = run("upload", "--help")
    assert upload.returncode == 0
    text = " ".join(upload.stdout.split())
    promises = ("--overwrite", "--seal", "~/.subnet/capabilities", "back that folder up",
                "Re-running an interrupted upload finishes it", "exit status is 1")  # fmt: skip
    for promise in promises:
        assert promise in text, promise
    download = run("download", "--help")
    text = " ".join(download.stdout.split())
    for promise in ("--capability", "~/.subnet/capabilities", "back that folder up"):
        assert promise in text, promise


def test_help_imports_no_service_and_lists_each_commands_own_help() -> None:
    code = (
        "import sys\n"
        "from subnet.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'validator', 'storage_miner', 'chain', 'sqlalchemy', 'alembic', 'minio'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.splitlines()[-1] == "[]", result.stdout
    from subnet.cli import COMMANDS, LazyGroup  # noqa: PLC0415 - after the subprocess

    assert isinstance(main, LazyGroup)
    ctx = click.Context(main)
    for name, (_, short) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None
        own = " ".join((command.help or "").split("\n\n")[0].split())
        assert own.startswith(short.rstrip(".")), (name, own)


def test_service_help_shows_types_units_and_env_vars() -> None:
    text = " ".join(run("miner", "run", "--help").stdout.split())
    for shown in ("--port INTEGER", "--capacity SIZE", "default: 10GiB",
                  "env: SUBNET_MINER_CAPACITY", "--metagraph-seconds SECONDS",
                  "--log-format [auto|json|text]"):  # fmt: skip
        assert shown in text, shown


def test_json_mode_prints_errors_as_json() -> None:
    result = run("metagraph", "--url", "http://127.0.0.1:1", "--json")
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["ok"] is False
    assert "cannot reach the chain at http://127.0.0.1:1" in answer["error"]
    assert "Error: cannot reach the chain" in result.stderr  # the sentence stays on stderr
    assert "Traceback" not in result.stderr


def test_download_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    existing = tmp_path / "report.pdf"
    existing.write_bytes(b"mine")
    result = run("download", "report.pdf", "-o", str(existing), "--wallet-path", str(tmp_path))
    assert result.returncode == 2
    assert "exists: choose another -o, or add --force" in result.stderr
    assert existing.read_bytes() == b"mine"


def test_durability_prints_the_table_and_json() -> None:
    table = run("durability", "--k", "4", "--m", "8", "--churn", "5%/day")
    assert table.returncode == 0, table.stderr
    assert "4-of-8, churn 5%/day" in table.stdout
    assert "segment nines" in table.stdout
    as_json = run("durability", "--k", "10", "--m", "16", "--churn", "5%/day", "--json")
    figures = json.loads(as_json.stdout)
    assert (figures["k"], figures["m"], figures["repair_threshold"]) == (10, 16, 6)
    assert figures["object_nines"] < figures["segment_nines"]
    bad = run("durability", "--churn", "lots")
    assert bad.returncode == 2
    assert "5%/day" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_wallet_list_shows_every_hotkey_whole_when_piped(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    made = {
        (name, hotkey): create_wallet(name, hotkey, wallets).ss58_address
        for name, hotkey in (("miner1", "default"), ("miner1", "second"), ("v1", "default"))
    }
    (wallets / "v1" / "hotkeys" / "broken").write_text("not a key")
    listed = run("wallet", "list", "--path", str(wallets), "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)["hotkeys"]
    found = {(e["name"], e["hotkey"]): e["ss58_address"] for e in entries if not e["problem"]}
    assert found == made
    [broken] = [e for e in entries if e["problem"]]
    assert (broken["hotkey"], broken["ss58_address"]) == ("broken", None)
    # A table on a pipe (not a terminal) keeps every address whole, however narrow $COLUMNS.
    table = subprocess.run(
        [sys.executable, "-m", "subnet", "wallet", "list", "--path", str(wallets)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "COLUMNS": "60"},
    )  # fmt: skip
    assert table.returncode == 0, table.stderr
    for address in made.values():
        assert address in table.stdout
    assert "…" not in table.stdout
    empty = run("wallet", "list", "--path", str(tmp_path / "none"))
    assert "subnet wallet create" in empty.stdout


FREEZE_PROBE = """
import atexit, gc, sys
atexit.register(lambda: print(gc.get_freeze_count(), file=sys.stderr))
sys.argv = ["subnet", *sys.argv[1:]]
from subnet.cli import main
main()
"""


def test_a_command_line_freezes_its_imports_and_an_in_process_call_does_not() -> None:
    """The imports a command makes live as long as its process, so no collection walks them
    again; a caller invoking the group in process (a test's CliRunner) keeps its heap
    collectable."""
    probe = subprocess.run(
        [sys.executable, "-c", FREEZE_PROBE, "wallet", "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert int(probe.stderr.split()[-1]) > 1000  # the imports' objects, frozen
    before = gc.get_freeze_count()
    result = CliRunner().invoke(main, ["wallet", "--help"])
    assert result.exit_code == 0, result.output
    assert gc.get_freeze_count() == before
