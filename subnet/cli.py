"""``subnet``: run the subnet's services and use it, from one command.

Settings come from flags, then ``SUBNET_*`` environment variables (click's auto env vars,
for example ``SUBNET_DEMO_SIZE_MIB``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from erasure import ErasureError, ErasureParams
from subnet import __version__
from subnet.audit_cmd import audit
from subnet.chain_cmd import chain, metagraph, rewards
from subnet.dataset_cmd import dataset
from subnet.demo import FileResult, prepare, round_trip
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
      subnet demo                 a local round-trip through the erasure core
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
for command in (upload, download, list_objects, remove):
    main.add_command(command)


@main.command()
@click.option(
    "--dir",
    "work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Work folder; it is wiped and refilled on each run.",
)
@click.option("--size-mib", default=64, show_default=True, help="Dataset size in MiB.")
@click.option("-k", default=4, show_default=True, help="Shares needed to rebuild a segment.")
@click.option("-m", default=8, show_default=True, help="Shares made per segment.")
@click.option("--segment-kib", default=16384, show_default=True, help="Segment size in KiB.")
@click.option("--seed", default=1, show_default=True, help="Seed for data and for losses.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
def demo(
    work: Path, size_mib: int, k: int, m: int, segment_kib: int, seed: int, as_json: bool
) -> None:
    """Round-trip a generated dataset through erasure coding, losing m-k shards per segment.

    \b
    1. generate a dataset (edge sizes: empty, 1 byte, around a segment; then bulk files)
    2. encrypt and encode each file into m shares per segment, on disk under --dir
    3. delete m-k shares of every segment
    4. rebuild each file from the k survivors, checking every share against its shard id
    5. compare the sha256 of every file with its original

    Exits non-zero if any file differs.
    """
    try:
        params = ErasureParams(k=k, m=m, segment_size=segment_kib * 1024)
    except ErasureError as exc:
        raise click.BadParameter(str(exc)) from None
    console = Console(stderr=as_json)
    files = prepare(work, size_mib, params.segment_size, seed)
    total = sum(p.stat().st_size for p in files)
    rng = random.Random(seed)  # noqa: S311 - picks which shards to lose, not a secret
    results: list[FileResult] = []
    start = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=as_json,
    ) as progress:
        task = progress.add_task("encode, lose, rebuild", total=total)
        for path in files:
            results.append(round_trip(path, work, params, rng, lambda n: progress.advance(task, n)))
    elapsed = time.perf_counter() - start
    failed = [r.name for r in results if not r.ok]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "k": k,
                    "m": m,
                    "segment_size": params.segment_size,
                    "seconds": round(elapsed, 3),
                    "ok": not failed,
                    "files": [{**asdict(r), "ok": r.ok} for r in results],
                },
                indent=2,
            )
        )
    else:
        console.print(_demo_table(results, params))
        verdict = "[red]FAILED" if failed else "[green]all files identical"
        console.print(
            f"{verdict}[/] - {len(results)} files, {total / 2**20:.1f} MiB in {elapsed:.1f} s; "
            f"shards and restored files are under {work}/"
        )
    if failed:
        raise SystemExit(1)


def _demo_table(results: list[FileResult], params: ErasureParams) -> Table:
    table = Table(title=f"Round trip, {params.k}-of-{params.m}, encrypted")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("segments", justify="right")
    table.add_column("shards kept/made", justify="right")
    table.add_column("sha256")
    table.add_column("result")
    for r in results:
        table.add_row(
            r.name,
            f"{r.size:,}",
            str(r.segments),
            f"{r.shards_written - r.shards_deleted}/{r.shards_written}",
            r.sha256_out[:16],
            "[green]identical" if r.ok else "[red]DIFFERS",
        )
    return table
