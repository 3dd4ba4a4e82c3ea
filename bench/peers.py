"""Our subnet against Tahoe-LAFS and SeaweedFS, side by side in one run, on the same files.

- **Ours**: ``--m`` miners (each on its own 127.0.3.x) and one k-of-m validator; timed are the
  real CLI commands as subprocesses, process start included: ``subnet upload PATH --json``
  and ``subnet download ID -o OUT --json``; and the same transfers from the in-process
  client (``subnet.gateway_client``, what the CLI runs), without the process start.
- **Tahoe-LAFS** (latest from PyPI, in its own venv under ``.peers/``): an introducer,
  ``--m`` storage nodes and a client with ``shares.needed=k``, ``shares.happy=m``,
  ``shares.total=m``; timed are ``tahoe put FILE`` and ``tahoe get CAP OUT``.
- **SeaweedFS** (``weed``), the replicated S3 reference: a master, ``--m`` volume servers and
  a filer with the S3 gateway, replication 001 (two copies: the same 2x as 4-of-8); timed
  are boto3's ``upload_file`` and ``download_file``, in process.

Each run writes a fresh random file per size (Tahoe's convergent encryption would otherwise
find the last run's shares and skip the upload), sends it through every system in an order
rotated from run to run, and checks each download's sha256. Page cache and writeback are
flushed (``sync``) before each timed step. Figures are size / median wall time, MB/s.
Ratios: ours CLI against ``tahoe`` CLI (both with process start), ours in-process client
against boto3 in process.

    python -m bench.peers [--sizes-mib 256,16] [--runs 3] [--out bench/results/peers.json]
    python -m bench.peers --smoke --out /tmp/peers.json   # 2 MiB, one run, 2-of-4
    python -m bench.peers --smoke --systems ours,seaweedfs --out /tmp/peers.json  # no Tahoe
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import aiohttp

from bench.cluster import LocalSubnet, local_subnet, precompile, random_file
from bench.report import command, emit
from bench.seaweedfs_s3 import S3Endpoint, seaweedfs_s3, weed_version
from bench.tahoe import TahoeGrid, ensure_tahoe, tahoe_binary, tahoe_grid, tahoe_version
from protocol.wallet import load_hotkey
from subnet.gateway_client import GatewayClient

SYSTEMS = ("ours", "tahoe", "seaweedfs")
STARTS = ("ours_cli_start", "tahoe_cli_start")  # `--version`: a CLI's process start alone
FIGURES = (
    "ours_cli_upload", "ours_cli_download", "ours_client_upload", "ours_client_download",
    "tahoe_put", "tahoe_get", "seaweedfs_s3_put", "seaweedfs_s3_get",
)  # fmt: skip
AIM_UPLOAD_VS_TAHOE = 4.0
AIM_DOWNLOAD_VS_TAHOE = 8.0  # issue 20 (was 5x)
MiB = 2**20
T = TypeVar("T")


_START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def subnet_cli() -> list[str]:
    """The ``subnet`` console script beside this Python (what a user runs), else -m."""
    script = Path(sys.executable).parent / "subnet"
    return [str(script)] if script.exists() else [sys.executable, "-m", "subnet"]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system) used so far by ``pids``, this process and its waited children.

    The servers are ``pids``; a CLI run as a subprocess counts as a waited child, an
    in-process client as this process. Kernel work done on behalf of nobody in particular
    (writeback threads) is not counted, for any system.
    """
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@dataclass(frozen=True, slots=True)
class Timing:
    seconds: float
    cpu: float
    """CPU seconds, every process of the system and its client summed."""


def timed(fn: Callable[[], T], pids: Iterable[int]) -> tuple[Timing, T]:
    """``fn()``'s wall and CPU time, after a ``sync``: no writeback left from the step before."""
    pids = tuple(pids)
    os.sync()
    cpu = cpu_seconds(pids)
    start = time.perf_counter()
    result = fn()
    took = time.perf_counter() - start
    return Timing(took, cpu_seconds(pids) - cpu), result


class Ours:
    def __init__(self, net: LocalSubnet, codec: str | None = None) -> None:
        self.net = net
        self.codec = codec  # None: the validator's default
        self.home = net.root / "home"  # the CLI keeps capabilities under $HOME/.subnet
        self.home.mkdir(exist_ok=True)
        self.env = {**os.environ, "HOME": str(self.home)}
        self.conn = ["--url", net.url, "--wallet-name", "user",
                     "--wallet-path", str(net.wallets), "--json"]  # fmt: skip
        self.keypair = load_hotkey("user", "default", net.wallets)

    def _cli(self, args: list[str]) -> dict[str, Any]:
        done = subprocess.run(
            [*subnet_cli(), *args, *self.conn], capture_output=True, text=True,
            env=self.env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"subnet {args[0]} failed: {done.stderr[-2000:]}")
        reply: dict[str, Any] = json.loads(done.stdout)
        return reply

    def cli_upload(self, path: Path) -> str:
        """``subnet upload PATH``: the object is named by the file's name, so names must differ."""
        codec = ["--codec", self.codec] if self.codec else []
        [obj] = self._cli(["upload", str(path), *codec])["objects"]
        if obj["status"] != "stored":
            raise RuntimeError(f"subnet upload did not store {path.name}: {obj}")
        return str(obj["id"])

    def cli_download(self, ref: str, out: Path) -> None:
        self._cli(["download", ref, "-o", str(out)])

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.net.validator.pid, *(p.pid for p in self.net.miners))

    def client(self, op: str, path: Path, name: str) -> Timing:
        """One in-process upload (``op="up"``) or download, timed (the session set up first)."""

        async def run() -> Timing:
            timeout = aiohttp.ClientTimeout(total=None)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                client = GatewayClient(session, self.keypair, self.net.url, self.net.root / "caps")
                await client.connect()
                await asyncio.to_thread(os.sync)
                cpu = cpu_seconds(self.pids)
                start = time.perf_counter()
                if op == "up":
                    await client.upload(path, name, codec=self.codec)
                else:
                    await client.download(name, path)
                took = time.perf_counter() - start
                return Timing(took, cpu_seconds(self.pids) - cpu)

        return asyncio.run(run())


@dataclass
class Systems:
    """The systems under test, started; None where not asked for."""

    names: list[str]
    ours: Ours | None = None
    tahoe: TahoeGrid | None = None
    s3: S3Endpoint | None = None


@dataclass
class Samples:
    seconds: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, figure: str, timing: Timing) -> None:
        self.seconds.setdefault(figure, []).append(timing.seconds)
        self.cpu.setdefault(figure, []).append(timing.cpu)


def check_same(original: str, out: Path, who: str) -> None:
    got = sha256_file(out)
    out.unlink()
    if got != original:
        raise RuntimeError(f"{who} returned different bytes ({got} != {original})")


def run_quiet(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True, check=True)


def run_ours(ours: Ours, file: Path, digest: str, out: Path, tag: str, samples: Samples) -> None:
    samples.add("ours_cli_start", timed(lambda: run_quiet([*subnet_cli(), "--version"]), ())[0])
    took, ref = timed(lambda: ours.cli_upload(file), ours.pids)
    samples.add("ours_cli_upload", took)
    samples.add("ours_cli_download", timed(partial(ours.cli_download, ref, out), ours.pids)[0])
    check_same(digest, out, "subnet download")
    samples.add("ours_client_upload", ours.client("up", file, f"client-{tag}"))
    samples.add("ours_client_download", ours.client("down", out, f"client-{tag}"))
    check_same(digest, out, "the gateway client")


def run_tahoe(tahoe: TahoeGrid, file: Path, digest: str, out: Path, samples: Samples) -> None:
    samples.add("tahoe_cli_start", timed(lambda: run_quiet([str(tahoe.tahoe), "--version"]), ())[0])
    took, cap = timed(lambda: tahoe.put(file), tahoe.pids)
    samples.add("tahoe_put", took)
    samples.add("tahoe_get", timed(partial(tahoe.get, cap, out), tahoe.pids)[0])
    check_same(digest, out, "tahoe get")


def run_seaweedfs(
    s3: S3Endpoint, file: Path, digest: str, out: Path, tag: str, samples: Samples
) -> None:
    samples.add("seaweedfs_s3_put", timed(lambda: s3.put(file, tag), s3.pids)[0])
    samples.add("seaweedfs_s3_get", timed(lambda: s3.get(tag, out), s3.pids)[0])
    check_same(digest, out, "SeaweedFS S3 GET")


def one_run(
    systems: Systems, order: list[str], file: Path, tag: str, work: Path, samples: Samples,
    errors: list[dict[str, str]],
) -> None:  # fmt: skip
    """Every system in ``order`` stores ``file`` and reads it back, timed and checked.

    A system's failure is recorded in ``errors`` (and logged) and the run goes on to the next
    system: one transient error must not lose a long run, and the report shows it.
    """
    digest = sha256_file(file)
    out = work / f"{tag}.out"
    for system in order:
        try:
            if system == "ours" and systems.ours is not None:
                run_ours(systems.ours, file, digest, out, tag, samples)
            elif system == "tahoe" and systems.tahoe is not None:
                run_tahoe(systems.tahoe, file, digest, out, samples)
            elif system == "seaweedfs" and systems.s3 is not None:
                run_seaweedfs(systems.s3, file, digest, out, tag, samples)
        except Exception as exc:  # noqa: BLE001 - recorded in the report, then the next system
            errors.append({"run": tag, "system": system, "error": f"{type(exc).__name__}: {exc}"})
            log(f"{tag}: {system} FAILED: {type(exc).__name__}: {exc}")
            out.unlink(missing_ok=True)


def figures(size: int, samples: Samples) -> dict[str, Any]:
    result: dict[str, Any] = {"size_mib": size // MiB}
    measured = {f: samples.seconds[f] for f in FIGURES if f in samples.seconds}
    for figure, times in measured.items():
        result[f"{figure}_mb_s"] = round(size / statistics.median(times) / 1e6, 1)
    for ours, peer, name in [
        ("ours_cli_upload", "tahoe_put", "upload_vs_tahoe"),
        ("ours_cli_download", "tahoe_get", "download_vs_tahoe"),
        ("ours_client_upload", "seaweedfs_s3_put", "upload_vs_seaweedfs"),
        ("ours_client_download", "seaweedfs_s3_get", "download_vs_seaweedfs"),
    ]:
        if f"{ours}_mb_s" in result and f"{peer}_mb_s" in result:
            result[name] = round(result[f"{ours}_mb_s"] / result[f"{peer}_mb_s"], 2)
    starts = {f: samples.seconds[f] for f in STARTS if f in samples.seconds}
    for figure, times in starts.items():
        result[f"{figure}_s"] = round(statistics.median(times), 3)
    measured.update(starts)
    for figure in measured:
        result[f"{figure}_cpu_s"] = round(statistics.median(samples.cpu[figure]), 2)
    # CPU per transfer, the peer's over ours: how many times less CPU ours spends. On a
    # shared, loaded machine this moves far less than the wall-clock figures.
    for ours, peer, name in [
        ("ours_cli_upload", "tahoe_put", "cpu_upload_tahoe_over_ours"),
        ("ours_cli_download", "tahoe_get", "cpu_download_tahoe_over_ours"),
        ("ours_client_upload", "seaweedfs_s3_put", "cpu_upload_seaweedfs_over_ours"),
        ("ours_client_download", "seaweedfs_s3_get", "cpu_download_seaweedfs_over_ours"),
    ]:
        if f"{ours}_cpu_s" in result and f"{peer}_cpu_s" in result:
            result[name] = round(result[f"{peer}_cpu_s"] / max(result[f"{ours}_cpu_s"], 0.01), 2)
    if "upload_vs_tahoe" in result:
        result["upload_aim_met"] = result["upload_vs_tahoe"] >= AIM_UPLOAD_VS_TAHOE
        result["download_aim_met"] = result["download_vs_tahoe"] >= AIM_DOWNLOAD_VS_TAHOE
    result["samples_per_figure"] = {f: len(ts) for f, ts in measured.items()}
    result["seconds"] = {f: [round(t, 3) for t in ts] for f, ts in measured.items()}
    result["cpu_seconds"] = {f: [round(samples.cpu[f][i], 3) for i in range(len(ts))]
                             for f, ts in measured.items()}  # fmt: skip
    return result


def _terminated(_signum: int, _frame: object) -> NoReturn:
    raise SystemExit(143)  # unwinds the ExitStack: every node and server is stopped


def start_systems(
    stack: ExitStack, work: Path, names: list[str], k: int, m: int, tahoe_exe: Path | None,
    setup: dict[str, Any], codec: str | None = None,
) -> Systems:  # fmt: skip
    """Start each system inside ``stack`` (which stops them) and describe it in ``setup``."""
    systems = Systems(names)
    if "ours" in names:
        log(f"starting ours: {m} miners, a {k}-of-{m} validator")
        precompile(Path(__file__).resolve().parent.parent)  # this checkout: what runs
        # On 127.0.3.x, apart from the 127.0.0.x other tests on a shared machine use.
        net = stack.enter_context(local_subnet(work / "ours", k, m, m, net="127.0.3"))
        systems.ours = Ours(net, codec)
        setup["ours"] = {
            "k": k, "m": m, "miners": m, "codec": codec or "the validator's default",
        }  # fmt: skip
    if tahoe_exe is not None:
        log(f"starting Tahoe-LAFS: an introducer, {m} storage nodes, a client")
        systems.tahoe = stack.enter_context(tahoe_grid(
            work / "tahoe", tahoe_exe, storage_nodes=m, needed=k, happy=m, total=m,
        ))  # fmt: skip
        setup["tahoe"] = {
            "version": tahoe_version(tahoe_exe), "storage_nodes": m,
            "shares_needed": k, "shares_happy": m, "shares_total": m,
        }  # fmt: skip
    if "seaweedfs" in names:
        log(f"starting SeaweedFS: a master, {m} volume servers, a filer with S3")
        systems.s3 = stack.enter_context(seaweedfs_s3(work / "seaweedfs", volumes=m))
        setup["seaweedfs"] = {
            "version": weed_version(), "volume_servers": m, "replication": "001",
            "client": "boto3 upload_file/download_file",
        }  # fmt: skip
    return systems


def measure(
    systems: Systems, sizes: list[int], runs: int, work: Path, errors: list[dict[str, str]],
    *, warm_up: bool = True,
) -> dict[int, Samples]:  # fmt: skip
    """A warm-up round, then ``runs`` rounds over every size, the order rotated each time."""
    if warm_up:
        log("warm-up round (untimed): connections, caches and code paths warm on every side")
        warm = random_file(work / "warm.bin", MiB)
        one_run(systems, systems.names, warm, "warm", work, Samples(), errors)
    samples = {size: Samples() for size in sizes}
    names = systems.names
    turn = 0
    for run in range(runs):
        for size in sizes:
            tag = f"r{run}-{size // MiB}mib"
            file = random_file(work / f"{tag}.bin", size)  # `subnet upload` names objects by it
            order = names[turn % len(names) :] + names[: turn % len(names)]
            turn += 1
            one_run(systems, order, file, tag, work, samples[size], errors)
            file.unlink()
            log(f"run {run + 1}/{runs}, {size // MiB} MiB: done ({', '.join(order)})")
    return samples


def keep_logs(work: Path) -> Path:
    """Copy every log of the run out of the temporary folder, before it goes."""
    kept = Path(tempfile.mkdtemp(prefix="bench-peers-logs-"))
    for log_file in work.rglob("*.log"):
        target = kept / log_file.relative_to(work)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log_file, target)
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mib", default="256,16", help="comma-separated file sizes")
    parser.add_argument("--runs", type=int, default=3, help="runs per size; medians reported")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--m", type=int, default=8, help="also miners/storage/volume servers")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="any of ours,tahoe,seaweedfs")
    parser.add_argument("--codec", help="ours: the erasure codec uploads ask for (zfec, isal)")
    parser.add_argument(
        "--no-install", action="store_true", help="fail, not install, if .peers/tahoe is missing"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/peers.json"))
    parser.add_argument(
        "--smoke", action="store_true", help="2 MiB, one run, 2-of-4, no warm-up round"
    )
    args = parser.parse_args()
    if args.smoke:
        args.sizes_mib, args.runs, args.k, args.m = "2", 1, 2, 4
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    if unknown := set(names) - set(SYSTEMS):
        parser.error(f"unknown systems: {', '.join(sorted(unknown))}")
    sizes = [int(s) * MiB for s in args.sizes_mib.split(",")]
    tahoe_exe = None
    if "tahoe" in names:
        tahoe_exe = tahoe_binary() if args.no_install else ensure_tahoe()
        if tahoe_exe is None:
            parser.error("Tahoe-LAFS is not installed under .peers/tahoe (--no-install given)")
    signal.signal(signal.SIGTERM, _terminated)

    setup: dict[str, Any] = {}
    errors: list[dict[str, str]] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        work = Path(tmp)
        try:
            with ExitStack() as stack:  # stops every system, also on failure
                systems = start_systems(
                    stack, work, names, args.k, args.m, tahoe_exe, setup, args.codec
                )
                samples = measure(systems, sizes, args.runs, work, errors, warm_up=not args.smoke)
                log("stopping every system")
        except BaseException:
            log(f"failed; the services' logs are kept in {keep_logs(work)}")
            raise
        if errors:
            log(f"{len(errors)} transfers failed; the services' logs are kept in {keep_logs(work)}")
    emit(
        {
            "bench": "peers",
            "command": command("bench.peers"),
            "runs_per_figure": args.runs,
            "warm_up_round": not args.smoke,
            "systems": names,
            # The machine is shared: a high load average says the figures are noisier.
            "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
            "setup": setup,
            "aims": {
                "upload_vs_tahoe": AIM_UPLOAD_VS_TAHOE,
                "download_vs_tahoe": AIM_DOWNLOAD_VS_TAHOE,
            },
            "errors": errors,
            "results": [figures(size, samples[size]) for size in sizes],
        },
        args.out,
    )
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
