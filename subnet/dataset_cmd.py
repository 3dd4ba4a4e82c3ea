"""``subnet dataset``: make a deterministic test dataset, and check a copy of it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from protocol.settings import parse_size
from subnet.dataset import SUMS, generate, verify


@click.group()
def dataset() -> None:
    """Synthetic datasets: generate one, or verify a downloaded copy."""


@dataset.command("generate")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--size", default="1GiB", show_default=True, help="Total size, e.g. 256MiB.")
@click.option("--files", default=100, show_default=True, help="Number of files (at least 2).")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a summary.")
def generate_cmd(folder: Path, size: str, files: int, seed: int, as_json: bool) -> None:
    """Write FOLDER with lognormal file sizes, an empty and a 1-byte file, and SHA256SUMS."""
    try:
        total = parse_size(size)
        console = Console(stderr=True)
        with Progress(
            BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console,
            disable=as_json,
        ) as progress:  # fmt: skip
            task = progress.add_task("generate", total=total)
            written = generate(folder, total, files, seed, lambda n: progress.advance(task, n))
    except (ValueError, FileExistsError) as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"folder": str(folder), "files": [asdict(f) for f in written]}))
    else:
        click.echo(f"{len(written)} files, {total:,} bytes in {folder}; sums in {folder / SUMS}")


@dataset.command("verify")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--sums", type=click.Path(dir_okay=False, path_type=Path), help="SHA256SUMS file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a summary.")
def verify_cmd(folder: Path, sums: Path | None, as_json: bool) -> None:
    """Check FOLDER against its SHA256SUMS (or --sums); exit 1 on any difference."""
    try:
        result = verify(folder, sums)
    except (ValueError, FileNotFoundError) as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({**asdict(result), "ok": result.ok}))
    else:
        for label, paths in (
            ("missing", result.missing),
            ("differs", result.mismatched),
            ("not in the sums", result.unexpected),
        ):
            for path in paths:
                click.echo(f"{label}: {path}")
        click.echo(f"{'OK' if result.ok else 'FAILED'}: {result.checked} files checked")
    if not result.ok:
        raise SystemExit(1)
