"""``subnet``: run the subnet's services and use it, from one command.

Settings come from flags, then ``SUBNET_*`` environment variables (click's auto env vars,
for example ``SUBNET_DEMO_SIZE_MIB``).

Each subcommand's module is imported only when that subcommand runs: the services pull in
SQLAlchemy, alembic, the S3 client and the chain, which cost most of a second to import and
which ``subnet upload`` never needs.
"""

from __future__ import annotations

import importlib

import click

from subnet import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SUBNET"}

# Command name -> "module:attribute", in the order `subnet --help` lists them.
COMMANDS = {
    "wallet": "subnet.wallet_cmd:wallet",
    "miner": "subnet.miner_cmd:miner",
    "chain": "subnet.chain_cmd:chain",
    "metagraph": "subnet.chain_cmd:metagraph",
    "rewards": "subnet.chain_cmd:rewards",
    "dataset": "subnet.dataset_cmd:dataset",
    "validator": "subnet.validator_cmd:validator",
    "audit": "subnet.audit_cmd:audit",
    "localnet": "subnet.localnet:localnet",
    "demo": "subnet.demo:demo",
    "durability": "subnet.durability_cmd:durability_cmd",
    "upload": "subnet.objects_cmd:upload",
    "download": "subnet.objects_cmd:download",
    "ls": "subnet.objects_cmd:list_objects",
    "rm": "subnet.objects_cmd:remove",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


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
