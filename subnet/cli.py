"""``subnet``: run the subnet's services and use it, from one command.

Settings come from flags, then ``SUBNET_*`` environment variables (click's auto env vars,
for example ``SUBNET_DEMO_SIZE_MIB``).
"""

from __future__ import annotations

import click

from subnet import __version__
from subnet.audit_cmd import audit
from subnet.chain_cmd import chain, metagraph, rewards
from subnet.dataset_cmd import dataset
from subnet.demo import demo
from subnet.localnet import localnet
from subnet.miner_cmd import miner
from subnet.objects_cmd import download, list_objects, remove, upload
from subnet.validator_cmd import validator
from subnet.wallet_cmd import wallet

CONTEXT = {"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SUBNET"}


@click.group(context_settings=CONTEXT)
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


main.add_command(wallet)
main.add_command(miner)
main.add_command(chain)
main.add_command(metagraph)
main.add_command(rewards)
main.add_command(dataset)
main.add_command(validator)
main.add_command(audit)
main.add_command(localnet)
main.add_command(demo)
for command in (upload, download, list_objects, remove):
    main.add_command(command)
