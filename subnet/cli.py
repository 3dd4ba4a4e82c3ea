"""``subnet``: run the subnet's services and use it, from one command.

Settings come from flags, then ``SUBNET_*`` environment variables (click's auto env vars,
for example ``SUBNET_DEMO_SIZE_MIB``).

Each subcommand's module is imported only when that subcommand runs: the services pull in
SQLAlchemy, alembic, the S3 client and the chain, which cost most of a second to import and
which ``subnet upload`` never needs.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
from typing import Any

import click

from subnet import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SUBNET"}

# Command name -> ("module:attribute", short help), in the order `subnet --help` lists them.
# The short help is written here so that `subnet --help` imports none of the commands (the
# services take seconds to import on a loaded machine); tests/test_cli.py checks each one
# against its command's own.
COMMANDS = {
    "wallet": ("subnet.wallet_cmd:wallet", "Make and inspect sr25519 hotkeys, in btcli's layout."),
    "miner": (
        "subnet.miner_cmd:miner",
        "Run a storage miner: hold shards for validators and prove it.",
    ),
    "chain": (
        "subnet.chain_cmd:chain",
        "Run the local chain: registration, weights, Yuma and TAO emission, per epoch.",
    ),
    "metagraph": (
        "subnet.chain_cmd:metagraph",
        "Show the subnet's UIDs: hotkeys, stake, permits, axons and last epoch's outputs.",
    ),
    "rewards": (
        "subnet.chain_cmd:rewards",
        "Show credits per hotkey, with the capacity and availability behind them.",
    ),
    "dataset": (
        "subnet.dataset_cmd:dataset",
        "Synthetic datasets: generate one, or verify a downloaded copy.",
    ),
    "validator": (
        "subnet.validator_cmd:validator",
        "Run a validator: the gateway users upload to, and the miners' auditor.",
    ),
    "audit": (
        "subnet.audit_cmd:audit",
        "Audit challenge logs: who was challenged, how they answered.",
    ),
    "s3": ("subnet.s3_cmd:s3", "The validator's S3 API (subnet validator run --s3-port)."),
    "localnet": (
        "subnet.localnet:localnet",
        "Run a whole subnet on this machine: chain, miners, validators.",
    ),
    "demo": ("subnet.demo:demo", "Run the whole subnet locally and tell its story."),
    "durability": (
        "subnet.durability_cmd:durability_cmd",
        "The expected annual loss of a segment and an object, and repair traffic, in nines.",
    ),
    "upload": ("subnet.objects_cmd:upload", "Upload files and whole directories (recursively)."),
    "download": (
        "subnet.objects_cmd:download",
        "Download an object by id or name, or a whole uploaded directory.",
    ),
    "ls": ("subnet.objects_cmd:list_objects", "List your objects on the validator."),
    "check": (
        "subnet.check_cmd:check",
        "Check objects' health: shares per segment against k and m, like tahoe check.",
    ),
    "rm": (
        "subnet.objects_cmd:remove",
        "Delete objects by id or name; their miners are asked to drop the shards.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    # Set when the group runs as this process's command line (not invoked in process, as by
    # a test's CliRunner, whose own objects must stay collectable).
    whole_process = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        target = COMMANDS[cmd_name][0]
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        if self.whole_process:
            # What the imports made lives as long as the process: out of the collector's
            # way, no collection walks it again (the one at exit included, when nothing
            # else runs: ~0.05 CPU-s of each `subnet upload`).
            gc.freeze()
        return command

    def main(  # type: ignore[override]
        self, args: list[str] | None = None, *pargs: Any, **kwargs: Any
    ) -> Any:
        """With ``--json`` anywhere, an error is printed as JSON on stdout too (the sentence
        still on stderr, the exit status unchanged): a script reading stdout gets JSON."""
        self.whole_process = args is None
        argv = list(sys.argv[1:] if args is None else args)
        if "--json" not in argv or kwargs.get("standalone_mode") is False:
            return super().main(args, *pargs, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            result = super().main(argv, *pargs, **kwargs)
        except click.ClickException as exc:
            click.echo(json.dumps({"ok": False, "error": exc.format_message()}))
            exc.show()  # and the sentence on stderr, as without --json
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo(json.dumps({"ok": False, "error": "aborted"}))
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The listing from :data:`COMMANDS`, importing nothing."""
        rows = [(name, short) for name, (_, short) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, prog_name="subnet")
def main() -> None:
    """A storage subnet: miners hold erasure-coded shards, validators prove and pay for them.

    \b
    Start here:
      subnet demo                 the whole subnet locally: upload, challenge, repair, rewards
      subnet localnet up          a whole subnet on this machine (chain, miners, validators)
      subnet wallet create ...    make a hotkey for a miner or validator
      subnet miner run ...        serve shards for validators
      subnet validator run ...    the gateway users upload to
      subnet upload PATH...       store files and directories
      subnet download REF -o OUT  fetch them back
    """
