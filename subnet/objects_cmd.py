"""``subnet upload / download / ls / rm``: a user's view of a validator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from erasure import CODECS
from protocol.wallet import DEFAULT_WALLET_PATH, WalletError, load_hotkey
from subnet.capability_store import StoreError
from subnet.gateway_client import SEALS, GatewayClient, GatewayError
from subnet.health_view import EXIT_HELP, exit_status, health_table
from subnet.tables import table_console

T = TypeVar("T")
CONCURRENT_FILES = 4


@dataclass(frozen=True, slots=True)
class Connection:
    url: str
    wallet_name: str
    wallet_hotkey: str
    wallet_path: Path
    token: str | None


def connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options that say which validator and who we are, as one ``conn`` argument."""

    @wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        fields = ("url", "wallet_name", "wallet_hotkey", "wallet_path", "token")
        conn = Connection(*(kwargs.pop(field) for field in fields))
        return func(conn=conn, **kwargs)

    command: Callable[..., Any] = wrapper
    for option in reversed(
        [
            click.option(
                "--url",
                envvar="SUBNET_VALIDATOR_URL",
                default="http://127.0.0.1:8090",
                show_default=True,
                help="The validator's gateway.",
            ),
            click.option(
                "--wallet-name",
                envvar="SUBNET_WALLET_NAME",
                default="user",
                show_default=True,
                help="Your wallet.",
            ),
            click.option(
                "--wallet-hotkey",
                envvar="SUBNET_WALLET_HOTKEY",
                default="default",
                show_default=True,
                help="Your hotkey in it.",
            ),
            click.option(
                "--wallet-path",
                type=click.Path(path_type=Path),
                default=DEFAULT_WALLET_PATH,
                help="Wallets folder.",
            ),
            click.option(
                "--token",
                envvar="SUBNET_TOKEN",
                default=None,
                help="An API token instead of a hotkey (prefer $SUBNET_TOKEN).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        ]
    ):
        command = option(command)
    return command


def _run(body: Callable[[GatewayClient], Awaitable[T]], conn: Connection) -> T:
    keypair = None
    if not conn.token:
        try:
            keypair = load_hotkey(conn.wallet_name, conn.wallet_hotkey, conn.wallet_path)
        except WalletError as exc:
            raise click.ClickException(str(exc)) from None

    async def main() -> T:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            client = GatewayClient(session, keypair, conn.url, token=conn.token)
            await client.connect()
            return await body(client)

    try:
        return asyncio.run(main())
    except aiohttp.ClientConnectionError as exc:
        raise click.ClickException(f"cannot reach the validator at {conn.url}: {exc}") from None
    except GatewayError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


def _progress(console: Console, disable: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(), console=console, disable=disable,
    )  # fmt: skip


def _files(paths: tuple[Path, ...]) -> list[tuple[Path, str]]:
    """(file, object name): a directory's files are named by their path under its name."""
    found = []
    for path in paths:
        if path.is_dir():
            found += [
                (f, f"{path.name}/{f.relative_to(path).as_posix()}")
                for f in sorted(path.rglob("*"))
                if f.is_file()
            ]
        else:
            found.append((path, path.name))
    return found


CAPS_HELP = (
    "Capabilities (each object's key: the only copy) are kept in "
    "~/.subnet/capabilities/<validator hotkey>.json; back that folder up: without it, "
    "objects sealed on this machine cannot be read."
)


@click.command(epilog=CAPS_HELP)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--seal",
    type=click.Choice(SEALS),
    default="client",
    show_default=True,
    help="Who encrypts: client (here; the validator never sees the data or the key), "
    "validator (it seals and hands the key back), none (plaintext shards).",
)
@click.option("--no-encrypt", is_flag=True, help="Same as --seal none.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a stored object whose file changed (the old version is deleted). "
    "Without it, a changed file is refused and reported.",
)
@click.option(
    "--codec",
    type=click.Choice(CODECS),
    default=None,
    help="Erasure codec: zfec, or isal (ISA-L, faster). Default: the validator's.",
)
@connection_options
def upload(
    paths: tuple[Path, ...], seal: str, no_encrypt: bool, overwrite: bool, codec: str | None,
    conn: Connection, as_json: bool,
) -> None:  # fmt: skip
    """Upload files and whole directories (recursively), several at a time.

    Objects are named by path (a directory's files as DIR/relative/path). Files are sealed
    here by default. Re-running an interrupted upload finishes it: objects the validator
    committed while this command was gone get their capabilities, unchanged files already
    stored are not sent again, and the rest are uploaded. A file that changed since it was
    stored is refused (exit 1) unless --overwrite. One failing file does not stop the
    others; a summary ends the run, and the exit status is 1 if any file failed.
    """
    files = [(path, name, path.stat().st_size) for path, name in _files(paths)]
    console = Console(stderr=True)
    seal = "none" if no_encrypt else seal

    async def body(client: GatewayClient) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        limit = asyncio.Semaphore(CONCURRENT_FILES)
        listed = {o["name"]: o for o in await client.list()}
        with _progress(console, as_json) as progress:
            total = progress.add_task("upload", total=sum(size for _, _, size in files))

            async def one(path: Path, name: str, size: int) -> None:
                async with limit:
                    sent = 0

                    def advance(n: int) -> None:
                        nonlocal sent
                        sent += n
                        progress.advance(total, n)

                    try:
                        done = await client.put(
                            path, name, listed, seal=seal, codec=codec, overwrite=overwrite,
                            on_bytes=advance,
                        )  # fmt: skip
                    except (GatewayError, aiohttp.ClientError, OSError) as exc:
                        progress.advance(total, max(0, size - sent))
                        results.append(
                            {"name": name, "id": None, "size": size, "status": "failed",
                             "error": _explain(exc)}
                        )  # fmt: skip
                        return
                    if done.status in SKIPPED:
                        # Not sent now: out of the bar's total (with whatever an attempt
                        # that met the stored object had counted), so it never shows
                        # more bytes than were sent.
                        task = progress.tasks[0]
                        progress.update(total, advance=-sent, total=(task.total or size) - size)
                    results.append(
                        {"name": name, "id": done.object_id, "size": done.size,
                         "status": done.status, "warning": done.warning}
                    )  # fmt: skip

            await asyncio.gather(*(one(*job) for job in files))
        return sorted(results, key=lambda r: r["name"])

    results = _run(body, conn)
    counts = {s: sum(r["status"] == s for r in results) for s in UPLOAD_STATUSES}
    if as_json:
        click.echo(json.dumps({"objects": results, **counts}))
    else:
        for r in results:
            line = f"{r['status']:9} {r['name']}  {r['id'] or '-'}  {r['size']:,} B"
            if r["status"] in SKIPPED:
                line += "  (skipped: already stored, unchanged)"
            click.echo(line + (f"\n          {r['error']}" if r.get("error") else ""))
        click.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n or s == "failed"))
    short = [r for r in results if r.get("warning")]
    if short:  # one line, whatever the number of files: the cause is the net, not a file
        more = len(short) - 1
        also = f" (and {more} more file{'s' if more > 1 else ''})" if more else ""
        click.echo(f"warning: {short[0]['name']}{also}: {short[0]['warning']}", err=True)
    if counts["failed"]:
        raise SystemExit(1)


UPLOAD_STATUSES = ("stored", "recovered", "present", "replaced", "failed")
SKIPPED = ("recovered", "present")  # stored by an earlier run: nothing sent now


def _explain(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, aiohttp.ClientError):
        return f"the connection to the validator failed: {exc}; re-run to finish"
    return str(exc)


@click.command(epilog=CAPS_HELP)
@click.argument("ref", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="File to write; or a directory, for every object whose name starts REF/.",
)
@click.option(
    "--capability",
    default=None,
    help="Read with this capability (URI:SN-CHK:...), whoever uploaded the object; "
    "with REF, it must be REF's.",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
@connection_options
def download(
    ref: str | None, output: Path, capability: str | None, force: bool, conn: Connection,
    as_json: bool,
) -> None:  # fmt: skip
    """Download an object by id or name, or a whole uploaded directory into -o DIR, or any
    object by --capability alone.

    Objects sealed on this machine are opened here with the capability kept at upload.
    Files appear only once complete and verified (written to a temporary name, then renamed).
    """
    if ref is None and capability is None:
        raise click.UsageError("give REF, or --capability URI:SN-CHK:...")
    console = Console(stderr=True)
    whole_directory = (
        ref is not None and capability is None and (output.is_dir() or ref.endswith("/"))
    )
    if not whole_directory and output.exists() and not force:  # said before any transfer
        raise click.UsageError(f"{output} exists: choose another -o, or add --force")

    async def body(client: GatewayClient) -> list[dict[str, Any]]:
        jobs: list[tuple[str | None, Path, int | None]]
        if whole_directory:
            assert ref is not None
            prefix = ref.rstrip("/") + "/"
            wanted = [o for o in await client.list() if o["name"].startswith(prefix)]
            if not wanted:
                raise GatewayError(404, "not_found", f"no objects named {prefix}...")
            jobs = [(o["id"], output / o["name"][len(prefix) :], o["size"]) for o in wanted]
            present = [str(t) for _, t, _ in jobs if t.exists()]
            if present and not force:
                raise click.UsageError(
                    f"{len(present)} of the files exist ({', '.join(present[:3])}"
                    f"{', ...' if len(present) > 3 else ''}): choose another -o, or add --force"
                )
        else:
            jobs = [(ref, output, None)]
        done: list[dict[str, Any]] = []
        with _progress(console, as_json) as progress:
            task = progress.add_task("download", total=sum(s or 0 for _, _, s in jobs) or None)
            for object_ref, target, _ in jobs:
                size = await client.download(
                    object_ref, target, lambda n: progress.advance(task, n),
                    capability=capability,
                )  # fmt: skip
                done.append({"ref": object_ref, "path": str(target), "size": size})
        return done

    done = _run(body, conn)
    if as_json:
        click.echo(json.dumps({"files": done}))
    else:
        for item in done:
            click.echo(f"{item['path']}  {item['size']:,} B")


@click.command(name="ls", epilog=EXIT_HELP.replace("Exit status", "With --health, exit status"))
@click.argument("prefix", required=False, default="")
@click.option(
    "--health",
    is_flag=True,
    help="Each object's health instead (fewest shares of a segment against m, segments "
    "short of a share, last verified); subnet check REF shows one in full.",
)
@connection_options
def list_objects(prefix: str, health: bool, conn: Connection, as_json: bool) -> None:
    """List your objects on the validator; with PREFIX (a folder, e.g. data3/), those whose
    names start with it."""
    if health:
        checked = _run(lambda c: c.health(prefix=prefix), conn)
        if as_json:
            click.echo(json.dumps({"objects": checked, "exit_status": exit_status(checked)}))
        else:
            table_console().print(health_table(checked))
        raise SystemExit(exit_status(checked))
    objects = [o for o in _run(lambda c: c.list(), conn) if o["name"].startswith(prefix)]
    if as_json:
        click.echo(json.dumps({"objects": objects}))
        return
    table = Table()
    for column in ("name", "id", "size", "encrypted", "stored"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for o in objects:
        table.add_row(o["name"], o["id"], f"{o['size']:,}", str(o["encrypted"]), o["created_at"])
    table_console().print(table)


@click.command(name="rm")
@click.argument("refs", nargs=-1, required=True)
@connection_options
def remove(
    refs: tuple[str, ...], conn: Connection, as_json: bool,
) -> None:  # fmt: skip
    """Delete objects by id or name; their miners are asked to drop the shards. A REF ending
    in / (data3/) is a folder: every object whose name starts with it."""

    async def body(client: GatewayClient) -> list[dict[str, Any]]:
        wanted: list[str] = []
        listing: list[dict[str, Any]] | None = None
        for ref in refs:
            if not ref.endswith("/"):
                wanted.append(ref)
                continue
            listing = listing if listing is not None else await client.list()
            inside = [o["id"] for o in listing if o["name"].startswith(ref)]
            if not inside:
                raise GatewayError(404, "not_found", f"no objects named {ref}...")
            wanted.extend(inside)
        return [await client.delete(ref) for ref in wanted]

    results = _run(body, conn)
    if as_json:
        click.echo(json.dumps({"deleted": results}))
    else:
        for r in results:
            click.echo(f"deleted {r['deleted']} ({r['shards']} shards)")
