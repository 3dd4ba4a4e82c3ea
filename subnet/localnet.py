"""``subnet localnet``: a whole subnet on this machine, each service its own OS process.

:class:`LocalNet` is the API (``subnet demo`` and the fault tests use it); the click commands
at the end are a thin layer over it. ``up`` makes, once, the wallets and a genesis giving
every validator stake (so each holds a permit) and the miners none, then starts the chain,
N miners (miner i on 127.0.0.{i+2}: validators put one shard of a segment per IP), V
validators accepting the ``user`` wallet and, with ``--backend s3``, a SeaweedFS holding one
bucket per miner. Miners and validators get ``--chain-url``: they register and find each
other on the chain. Services run in their own sessions, so Ctrl-C in a shell never reaches
them: they are stopped by PID (SIGTERM, then SIGKILL), from the state file.

The directory (default ``~/.subnet/localnet``, or ``$SUBNET_LOCALNET_DIR``)::

    localnet.json     the config and, per service, its ports, URL, PID and log
    genesis.json      written before the chain's first start
    wallets/          owner, user, validator0.., miner0.. (btcli layout, unencrypted)
    chain/ miners/miner0/ validators/validator0/ seaweedfs/     each service's data
    logs/<service>.log

Everything stays after ``down``: the next ``up`` reuses the wallets, the data, the chain and,
when they are free, the same ports. Delete the directory for a fresh net.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import click
from bittensor_wallet import Keypair
from rich import box
from rich.console import Console
from rich.table import Table

from chain.genesis import Genesis, GenesisError, load_genesis, tao_to_rao, write_genesis
from chain.metagraph import Metagraph
from protocol.settings import parse_size
from protocol.wallet import WalletError, create_wallet, hotkey_file, load_hotkey
from subnet.processes import (
    free_port,
    seaweedfs_command,
    start_process,
    wait_healthy,
)
from subnet.tables import table_console

DEFAULT_DIR = Path("~/.subnet/localnet")
STATE_FILE = "localnet.json"
STATE_VERSION = 1
VALIDATOR_STAKE_TAO = 1000
MAX_UIDS, MAX_VALIDATORS = 256, 64  # the chain's defaults
MAX_MINERS = 250  # 127.0.0.2 .. 127.0.0.251
STARTUP_SECONDS = 60.0
STOP_SECONDS = 10.0
SEAWEEDFS_GRACE = 2.0
Role = Literal["chain", "seaweedfs", "miner", "validator"]


class LocalNetError(Exception):
    """The local net cannot do what was asked; the message says what to do instead."""


class LocalNetRunning(LocalNetError):
    """Another ``up`` owns the directory: its processes run, or it is starting them."""


@dataclass(frozen=True, slots=True)
class LocalNetConfig:
    miners: int = 4
    validators: int = 1
    block_time: float = 0.25  # seconds per block
    tempo: int = 20  # blocks per epoch; fixed when the chain is made
    backend: Literal["fs", "s3"] = "fs"
    genesis_issuance: str = "0"  # TAO issued at block 0; fixed when the chain is made
    capacity: str = "10GiB"  # per miner

    def __post_init__(self) -> None:
        if not 1 <= self.miners <= MAX_MINERS:
            raise LocalNetError(f"miners: 1..{MAX_MINERS}, got {self.miners}")
        if not 1 <= self.validators <= MAX_VALIDATORS:
            raise LocalNetError(f"validators: 1..{MAX_VALIDATORS} (permits), got {self.validators}")
        if self.miners + self.validators > MAX_UIDS:
            raise LocalNetError(f"miners + validators must fit the chain's {MAX_UIDS} UIDs")
        if not self.block_time > 0 or self.tempo < 1:
            raise LocalNetError("block_time must be positive and tempo at least 1 block")
        if self.backend not in ("fs", "s3"):
            raise LocalNetError(f"backend is fs or s3, got {self.backend!r}")
        try:
            tao_to_rao(self.genesis_issuance, "genesis issuance")
            parse_size(self.capacity)
        except ValueError as exc:
            raise LocalNetError(str(exc)) from None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LocalNetConfig:
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})

    @property
    def erasure(self) -> tuple[int, int, int]:
        """(k, m, extra receipts) that a net of this many miners can place and repair: one
        share per miner, at most 8, leaving two miners free to take rebuilt shares (with m
        equal to the miner count a lost share has nowhere new to go); k = 4 when it fits."""
        m = min(8, self.miners - 2) if self.miners > 4 else self.miners
        k = max(1, min(4, m - 2)) if m > 2 else 1
        return k, m, min(1, m - k)


@dataclass(slots=True)
class Service:
    """One process of the net, as the state file records it."""

    name: str  # chain, seaweedfs, miner0.., validator0..
    role: Role
    host: str
    port: int
    log: str
    hotkey: str | None = None
    pid: int | None = None
    started: int | None = None  # the kernel's start time of pid: a reused PID is not ours
    extra_ports: list[int] = field(default_factory=list)
    # How it was started, so ``restart`` can start it again: its command line, and the
    # environment variables set on top of ours.
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "url": self.url}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Service:
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    service: Service
    alive: bool
    healthy: bool
    uid: int | None = None  # on the metagraph (miners and validators)
    axon: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.service.to_dict(),
            "alive": self.alive,
            "healthy": self.healthy,
            "uid": self.uid,
            "axon": self.axon,
        }


@dataclass(frozen=True, slots=True)
class NetStatus:
    root: Path
    services: list[ServiceStatus]
    metagraph: Metagraph | None

    @property
    def running(self) -> bool:
        return any(s.alive for s in self.services)

    @property
    def healthy(self) -> bool:
        return bool(self.services) and all(s.healthy for s in self.services)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dir": str(self.root),
            "running": self.running,
            "healthy": self.healthy,
            "block": None if self.metagraph is None else self.metagraph.block,
            "services": [s.to_dict() for s in self.services],
        }


# -- processes by PID -----------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the command name), None if there is no such PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def _start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else None


def process_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not) and is the process started at ``started``."""
    if pid is None:
        return False
    if not Path("/proc/self/stat").exists():  # no procfs (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z" and started in (None, int(stat[19]))


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _bindable(host: str, port: int) -> bool:
    """As the services will bind: with SO_REUSEADDR, so connections of the last run still in
    TIME_WAIT do not keep its port from being reused."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _loopback_aliases() -> bool:
    """Linux answers on all of 127/8; macOS only on 127.0.0.1 unless aliases are added."""
    return _bindable("127.0.0.2", 0)


class _Ports:
    """Ports for one ``up``: the last run's when still free, else fresh ones, never twice."""

    def __init__(
        self, previous: Mapping[str, Service], hotkeys: Mapping[str, str], logs: Path
    ) -> None:
        self.previous = previous
        self.hotkeys = hotkeys
        self.logs = logs
        self.chosen: set[tuple[str, int]] = set()

    def pick(self, host: str, wanted: int) -> int:
        # free_port also wants the +10000 twin free (SeaweedFS's gRPC): ask the same here.
        reusable = wanted and (host, wanted) not in self.chosen
        if reusable and _bindable(host, wanted) and _bindable(host, wanted + 10000):
            self.chosen.add((host, wanted))
            return wanted
        while (host, picked := free_port(host)) in self.chosen:
            pass
        self.chosen.add((host, picked))
        return picked

    def service(self, name: str, role: Role, host: str, count: int = 1) -> Service:
        old = self.previous.get(name)
        wanted = [old.port, *old.extra_ports] if old else []
        main, *extra = [self.pick(host, w) for w in (wanted + [0] * count)[:count]]
        log = str(self.logs / f"{name}.log")
        return Service(name, role, host, main, log, self.hotkeys.get(name), extra_ports=extra)


# -- the net --------------------------------------------------------------------------------


class LocalNet:
    """A local net in ``root``. ``config`` defaults to the one the last ``up`` recorded.

    ``service_args`` adds flags to single services' command lines at ``up`` (a flag given
    twice takes the last value), e.g. ``{"miner3": ["--capacity", "1MiB"], "validator1":
    ["--database-url", url]}``; the fault tests use it. It is not saved for the next ``up``.

    ``miner_programs`` swaps the program of single miners: per miner name, an argv prefix
    that replaces ``python -m subnet miner run`` and takes the same flags, e.g. ``{"miner3":
    [sys.executable, "-m", "tests.adversaries", "noserve"]}`` (run from the repository
    root) for an adversarial miner that registers and is placed on like any other;
    ``bench.incentives`` uses it. Like ``service_args``, it applies to this ``up`` only
    (``restart`` reuses the recorded command line).
    """

    def __init__(
        self,
        root: Path | str = DEFAULT_DIR,
        config: LocalNetConfig | None = None,
        *,
        service_args: Mapping[str, Sequence[str]] | None = None,
        miner_programs: Mapping[str, Sequence[str]] | None = None,
    ):
        self.root = Path(root).expanduser().absolute()
        saved, self.services = self._read_state()
        self.config = config or saved or LocalNetConfig()
        self.service_args = {name: list(args) for name, args in (service_args or {}).items()}
        self.miner_programs = {name: list(argv) for name, argv in (miner_programs or {}).items()}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    def saved_config(cls, root: Path | str = DEFAULT_DIR) -> LocalNetConfig | None:
        return cls(root)._read_state()[0]

    # paths and accessors

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    @property
    def wallet_path(self) -> Path:
        return self.root / "wallets"

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    def service(self, name: str) -> Service:
        found = next((s for s in self.services if s.name == name), None)
        if found is None:
            raise LocalNetError(f"no service {name!r} in {self.root}: run `subnet localnet up`")
        return found

    def urls(self, role: Role) -> list[str]:
        return [s.url for s in self.services if s.role == role]

    @property
    def chain_url(self) -> str:
        return self.service("chain").url

    @property
    def miner_urls(self) -> list[str]:
        return self.urls("miner")

    @property
    def validator_urls(self) -> list[str]:
        return self.urls("validator")

    def dashboards(self) -> str:
        """Where each service's dashboard is (every service serves one at ``/``)."""
        return "dashboards (open in a browser):\n" + "\n".join(
            f"  {s.name:<12} {s.url}/" for s in self.services
        )

    def keypair(self, wallet: str) -> Keypair:
        """The hotkey of ``user``, ``owner``, ``validator0``, ``miner3``, ..."""
        return load_hotkey(wallet, "default", self.wallet_path)

    @property
    def user(self) -> Keypair:
        """The wallet every validator accepts uploads from."""
        return self.keypair("user")

    # the three commands

    def up(self) -> list[str]:
        """Start everything and wait until each service is healthy; returns warnings.
        On any failure, whatever was started is stopped again."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock(wait=False):
            _, self.services = self._read_state()
            running = self.running()
            if running:
                raise LocalNetRunning(
                    f"a local net is already running in {self.root} ({len(running)} processes, "
                    f"e.g. {running[0].name} pid {running[0].pid}); stop it with "
                    f"`subnet localnet down --dir {self.root}`"
                )
            hotkeys = self._wallets()
            warnings = self._genesis(hotkeys)
            previous = {s.name: s for s in self.services}
            self.services = []
            try:
                self._start_all(hotkeys, previous, warnings)
            except BaseException:
                self._stop(self.services, STOP_SECONDS)
                # Keep the ports of services not reached, for the next try.
                started = {s.name for s in self.services}
                for name, service in previous.items():
                    if name not in started:
                        self.services.append(replace(service, pid=None, started=None))
                self._save()
                raise
            self._save()
        return warnings

    def status(self) -> NetStatus:
        _, self.services = self._read_state()
        alive = [process_alive(s.pid, s.started) for s in self.services]
        with ThreadPoolExecutor(max_workers=16) as pool:
            healthy = list(pool.map(_healthy, [s.url for s in self.services]))
        graph = self._metagraph() if any(s.role == "chain" for s in self.services) else None
        statuses = []
        for service, is_alive, is_healthy in zip(self.services, alive, healthy, strict=True):
            neuron = graph.by_hotkey(service.hotkey) if graph and service.hotkey else None
            statuses.append(
                ServiceStatus(
                    service,
                    alive=is_alive,
                    healthy=is_alive and is_healthy,
                    uid=None if neuron is None else neuron.uid,
                    axon=None if neuron is None else neuron.axon,
                )
            )
        return NetStatus(self.root, statuses, graph)

    def down(self, timeout: float = STOP_SECONDS) -> list[Service]:
        """Stop every process the net started (by PID); returns those that were running."""
        if not self.state_path.exists():
            return []
        with self._lock(wait=True):
            _, self.services = self._read_state()
            running = self.running()
            self._stop(running, timeout)
            for service in self.services:
                service.pid = service.started = None
            self._save()
        return running

    def running(self) -> list[Service]:
        return [s for s in self.services if process_alive(s.pid, s.started)]

    def restart(self, name: str, timeout: float = STOP_SECONDS) -> Service:
        """Stop one service if it runs (SIGTERM, then SIGKILL after ``timeout``), start it
        again with the command line and environment it had, so on the same address and
        data, and wait until it is healthy."""
        with self._lock(wait=True):
            _, self.services = self._read_state()
            old = self.service(name)
            if not old.argv:
                raise LocalNetError(
                    f"{name} was started by an older `subnet localnet up` that did not record "
                    f"its command line; run `subnet localnet down --dir {self.root}` and up again"
                )
            self._stop([old], timeout)
            service = replace(old, pid=None, started=None)
            self._spawn(service)
        self._wait(service)
        return service

    def __enter__(self) -> LocalNet:
        self.up()
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.down()

    # state

    def _read_state(self) -> tuple[LocalNetConfig | None, list[Service]]:
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None, []
        except ValueError as exc:
            raise LocalNetError(f"{self.state_path} is not valid JSON ({exc}); delete it") from None
        if raw.get("version") != STATE_VERSION:
            raise LocalNetError(f"{self.state_path} has an unknown version; delete it")
        return (
            LocalNetConfig.from_dict(raw["config"]),
            [Service.from_dict(s) for s in raw["services"]],
        )

    def _save(self) -> None:
        state = {
            "version": STATE_VERSION,
            "config": asdict(self.config),
            "services": [s.to_dict() for s in self.services],
        }
        tmp = self.state_path.with_name(STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_path)

    @contextlib.contextmanager
    def _lock(self, *, wait: bool) -> Iterator[None]:
        """One ``up`` or ``down`` at a time per directory, across shells."""
        with (self.root / ".lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise LocalNetRunning(
                    f"another `subnet localnet up` is starting in {self.root}"
                ) from None
            yield

    # up, step by step

    def _wallets(self) -> dict[str, str]:
        """Hotkey per wallet name, creating the missing ones."""
        names = ["owner", "user"]
        names += [f"validator{j}" for j in range(self.config.validators)]
        names += [f"miner{i}" for i in range(self.config.miners)]
        hotkeys = {}
        try:
            for name in names:
                if hotkey_file(name, "default", self.wallet_path).exists():
                    hotkeys[name] = self.keypair(name).ss58_address
                else:
                    hotkeys[name] = create_wallet(name, "default", self.wallet_path).ss58_address
        except WalletError as exc:
            raise LocalNetError(str(exc)) from None
        return hotkeys

    def _genesis(self, hotkeys: Mapping[str, str]) -> list[str]:
        cfg = self.config
        validators = {n: k for n, k in hotkeys.items() if n.startswith("validator")}
        if not (self.root / "chain" / "chain.sqlite").exists():
            stake = tao_to_rao(VALIDATOR_STAKE_TAO, "stake")
            genesis = Genesis(
                hotkeys["owner"],
                stakes=dict.fromkeys(validators.values(), stake),
                issuance=tao_to_rao(cfg.genesis_issuance, "genesis issuance"),
                tempo=cfg.tempo,
                block_interval=cfg.block_time,
            )
            write_genesis(genesis, self.genesis_path)
            return []
        try:
            genesis = load_genesis(self.genesis_path)
        except GenesisError as exc:
            return [f"cannot compare with the chain's genesis: {exc}"]
        warnings = []
        unstaked = sorted(n for n, k in validators.items() if k not in genesis.stakes)
        fresh = f"delete {self.root / 'chain'} for a fresh chain"
        if unstaked:
            warnings.append(
                f"{', '.join(unstaked)} had no stake at the chain's genesis, so no validator "
                f"permit; {fresh}"
            )
        issuance = tao_to_rao(cfg.genesis_issuance, "genesis issuance")
        if (genesis.tempo, genesis.issuance) != (cfg.tempo, issuance):
            warnings.append(
                f"the chain keeps the tempo ({genesis.tempo}) and issuance of its genesis; {fresh}"
            )
        return warnings

    def _start_all(
        self, hotkeys: Mapping[str, str], previous: Mapping[str, Service], warnings: list[str]
    ) -> None:
        cfg = self.config
        ports = _Ports(previous, hotkeys, self.root / "logs")
        env: dict[str, str] = {}  # set on top of our environment
        s3_args: list[str] = []
        if cfg.backend == "s3":
            weed = ports.service("seaweedfs", "seaweedfs", "127.0.0.1", count=4)
            (self.root / "seaweedfs").mkdir(parents=True, exist_ok=True)
            argv = seaweedfs_command(self.root / "seaweedfs", weed.port, *weed.extra_ports)
            self._launch(weed, argv)
            self._wait(weed)
            # Any key opens a SeaweedFS without an identity config; env, not flags, as for S3.
            env |= {"SUBNET_MINER_S3_ACCESS_KEY": "localnet", "SUBNET_MINER_S3_SECRET_KEY": "-"}
            s3_args = ["--backend", "s3", "--s3-endpoint", f"127.0.0.1:{weed.port}"]

        chain = ports.service("chain", "chain", "127.0.0.1")
        chain_args = [
            "chain", "run", "--host", chain.host, "--port", str(chain.port),
            "--data-dir", str(self.root / "chain"), "--block-interval", str(cfg.block_time),
            # Validators send weights once an epoch; never let the limit refuse them.
            "--weights-rate-limit", str(max(1, cfg.tempo // 2)),
        ]  # fmt: skip
        if self.genesis_path.exists():
            chain_args += ["--genesis", str(self.genesis_path)]
        self._launch(chain, self._subnet(chain_args))
        self._wait(chain)

        aliases = _loopback_aliases()
        if not aliases and cfg.miners > 1:
            warnings.append(
                "only 127.0.0.1 answers here, so every miner shares it and a validator places "
                "one shard per segment; on macOS add aliases: sudo ifconfig lo0 alias 127.0.0.2"
            )
        # Miners also list the validators statically: an upload right after `up` must not
        # wait for their next metagraph read to learn the validators' permits.
        validator_keys = ",".join(hotkeys[f"validator{j}"] for j in range(cfg.validators))
        started = []
        for i in range(cfg.miners):
            name = f"miner{i}"
            miner = ports.service(name, "miner", f"127.0.0.{i + 2}" if aliases else "127.0.0.1")
            args = [
                "miner", "run", *self._wallet_args(name), "--host", miner.host,
                "--port", str(miner.port), "--data-dir", str(self.root / "miners" / name),
                "--capacity", cfg.capacity, "--chain-url", chain.url,
                "--validators", validator_keys, "--metagraph-seconds", "1",
            ]  # fmt: skip
            if s3_args:
                args += [*s3_args, "--s3-bucket", f"localnet-{name}"]
            self._launch(miner, self.miner_command(name, args), env)
            started.append(miner)
        started += self._start_validators(ports, chain.url, hotkeys["user"])
        for each in started:  # they start in parallel; wait for each in turn
            self._wait(each)
        self._wait_until_placeable()

    def _wait_until_placeable(self) -> None:
        """Until every validator can place shards on every miner. Validators learn miners
        from the metagraph, which a miner joins once it runs: on a busy machine a validator
        can be healthy before it knows enough miners, and an upload then gets 503."""
        deadline = time.monotonic() + STARTUP_SECONDS
        for url in self.validator_urls:
            known = 0
            while known < self.config.miners:
                try:
                    with urllib.request.urlopen(f"{url}/v1/info", timeout=2) as response:  # noqa: S310
                        known = int(json.load(response)["miners_available"])
                except (OSError, ValueError, KeyError):
                    known = 0
                if known < self.config.miners:
                    if time.monotonic() > deadline:
                        raise LocalNetError(
                            f"the validator at {url} can reach {known} of the "
                            f"{self.config.miners} miners; see {self.root / 'logs'}"
                        )
                    time.sleep(0.1)

    def _start_validators(self, ports: _Ports, chain_url: str, user: str) -> list[Service]:
        k, m, extra = self.config.erasure
        epoch_seconds = self.config.tempo * self.config.block_time
        started = []
        for j in range(self.config.validators):
            name = f"validator{j}"
            validator = ports.service(name, "validator", "127.0.0.1")
            args = [
                "validator", "run", *self._wallet_args(name), "--host", validator.host,
                "--port", str(validator.port),
                "--data-dir", str(self.root / "validators" / name),
                "--users", f"user={user}", "--chain-url", chain_url,
                "--k", str(k), "--m", str(m), "--extra-receipts", str(extra),
                # A local net's pace: challenges every few seconds, weights once an epoch.
                "--metagraph-seconds", "2", "--challenge-seconds", "5",
                "--repair-seconds", "5", "--repair-unseen-after", "60",
                "--weights-seconds", str(max(1.0, epoch_seconds)),
            ]  # fmt: skip
            self._launch(validator, self._subnet(args))
            started.append(validator)
        return started

    def _wallet_args(self, name: str) -> list[str]:
        return ["--wallet-name", name, "--wallet-path", str(self.wallet_path)]

    @staticmethod
    def _subnet(args: list[str]) -> list[str]:
        return [sys.executable, "-m", "subnet", *args, "--log-format", "text"]

    def miner_command(self, name: str, args: list[str]) -> list[str]:
        """``python -m subnet miner run ...`` for miner ``name``, or the same flags after its
        program in ``miner_programs``."""
        program = self.miner_programs.get(name)
        if program is None:
            return self._subnet(args)
        if args[:2] != ["miner", "run"]:
            raise ValueError(f"a miner's arguments start with 'miner run', not {args[:2]}")
        return [*program, *args[2:], "--log-format", "text"]

    def _launch(
        self, service: Service, argv: list[str], env: Mapping[str, str] | None = None
    ) -> None:
        """Start a service of ``up``: ``argv`` then this net's extra flags for it, with
        ``env`` set on top of our environment."""
        service.argv = [*argv, *self.service_args.get(service.name, [])]
        service.env = dict(env or {})
        self._spawn(service)

    def _spawn(self, service: Service) -> None:
        """Start the command ``service`` records and put it in the state file."""
        previous = self._procs.get(service.name)
        if previous is not None:
            previous.poll()  # reap the process it replaces, if it was our child
        proc = start_process(
            service.argv,
            Path(service.log),
            {**os.environ, **service.env},
            new_session=True,
        )
        service.pid, service.started = proc.pid, _start_ticks(proc.pid)
        self._procs[service.name] = proc
        names = [s.name for s in self.services]
        if service.name in names:
            self.services[names.index(service.name)] = service
        else:
            self.services.append(service)
        self._save()  # at once: a `down` from another shell must find it

    def _wait(self, service: Service) -> None:
        try:
            wait_healthy(service.url, self._procs[service.name], Path(service.log), STARTUP_SECONDS)
        except RuntimeError as exc:
            raise LocalNetError(f"{service.name} did not start: {exc}") from None

    def _ended(self, service: Service) -> bool:
        proc = self._procs.get(service.name)
        if proc is not None and proc.pid == service.pid:
            return proc.poll() is not None  # our child: reap it, or it lingers as a zombie
        return not process_alive(service.pid, service.started)

    def exited(self) -> list[Service]:
        """Services this object started whose process has ended since."""
        return [s for s in self.services if s.name in self._procs and self._ended(s)]

    def _stop(self, services: list[Service], timeout: float) -> None:
        """SIGTERM them all, then SIGKILL each one still running after its grace."""

        def grace(service: Service) -> float:
            # SeaweedFS takes ~15 s to stop gracefully; what it stored is already written,
            # so it only gets a moment.
            return min(timeout, SEAWEEDFS_GRACE) if service.role == "seaweedfs" else timeout

        started = time.monotonic()
        killed: set[str] = set()
        for pid in (s.pid for s in services if not self._ended(s)):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                    os.kill(pid, signal.SIGCONT)  # a stopped process acts on it once continued
        while left := [s for s in services if not self._ended(s)]:
            elapsed = time.monotonic() - started
            if elapsed > timeout + 5:
                return
            for service in left:
                due = service.name not in killed and elapsed >= grace(service)
                if due and service.pid is not None:
                    killed.add(service.name)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(service.pid, signal.SIGKILL)
            time.sleep(0.05)

    def _metagraph(self) -> Metagraph | None:
        try:
            url = f"{self.chain_url}/v1/metagraph"
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - http only
                return Metagraph.from_dict(json.load(response))
        except (OSError, ValueError, KeyError):
            return None


# -- the commands ---------------------------------------------------------------------------

dir_option = click.option(
    "--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DIR,
    show_default=True, envvar="SUBNET_LOCALNET_DIR",
    help="The local net's folder: wallets, data, logs, state.",
)  # fmt: skip


def _help(text: str, default: object) -> str:
    return f"{text} [default: {default}, or the last run's]"


@click.group()
def localnet() -> None:
    """Run a whole subnet on this machine: chain, miners, validators, one process each.

    \b
    Start here:
      subnet localnet up --miners 8 --validators 2    start it, Ctrl-C stops it
      subnet localnet up --detach                     or leave it running
      subnet localnet status                          from any shell
      subnet localnet down                            stop every process it started
    """


@localnet.command()
@dir_option
@click.option("--miners", type=click.IntRange(1, MAX_MINERS), help=_help("Miners to run.", 4))
@click.option("--validators", type=click.IntRange(1, MAX_VALIDATORS), help=_help("Validators.", 1))
@click.option(
    "--block-time", type=click.FloatRange(min=0.001), help=_help("Seconds per block.", 0.25)
)
@click.option("--tempo", type=click.IntRange(min=1), help=_help("Blocks per epoch.", 20))
@click.option("--backend", type=click.Choice(["fs", "s3"]), help=_help("Miners' storage.", "fs"))
@click.option("--genesis-issuance", metavar="TAO", help=_help("TAO issued before block 0.", 0))
@click.option("--capacity", help=_help("Each miner's capacity.", "10GiB"))
@click.option("--detach", is_flag=True, help="Return once everything is healthy.")
@click.option("--json", "as_json", is_flag=True, help="Print the services as JSON.")
def up(root: Path, detach: bool, as_json: bool, **given: Any) -> None:
    """Start the chain, miners and validators, wait until all are healthy, and show them.

    The first run makes wallets (owner, user, validatorN, minerN) under DIR/wallets and a
    genesis staking 1000 TAO on each validator, so each holds a permit; miners hold none.
    Miner i listens on 127.0.0.{i+2}. Validators accept uploads from the `user` wallet and
    code k-of-m with m = min(8, miners), k = m/2. Miners and validators register on the
    chain and find each other there; challenges and weights run every few seconds.

    Later runs reuse the wallets, data, chain and ports; options left out keep the last
    run's values. Tempo and genesis issuance are fixed when the chain is first made
    (delete DIR/chain for a new one). In the foreground (the default) Ctrl-C stops
    everything; after --detach, `subnet localnet down` does. Logs: DIR/logs/.

    \b
    Examples:
      subnet localnet up
      subnet localnet up --miners 8 --validators 2 --block-time 0.1 --tempo 10
      subnet localnet up --backend s3 --detach --dir /tmp/net
      subnet upload --url <validator URL> --wallet-path ~/.subnet/localnet/wallets FILE
    """
    try:
        saved = LocalNet.saved_config(root) or LocalNetConfig()
        config = replace(saved, **{k: v for k, v in given.items() if v is not None})
        net = LocalNet(root, config)
        console = Console(stderr=as_json)
        with console.status("starting the local net…", spinner="dots"):
            warnings = net.up()
    except LocalNetError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        console.print("interrupted while starting; what had started is stopped", highlight=False)
        raise SystemExit(130) from None
    try:
        _report_and_serve(net, config, console, warnings, as_json=as_json, detach=detach)
    except KeyboardInterrupt:  # before the foreground loop took over: stop all the same
        stopped = net.down()
        console.print(f"stopped {len(stopped)} services", highlight=False)


def _report_and_serve(
    net: LocalNet,
    config: LocalNetConfig,
    console: Console,
    warnings: list[str],
    *,
    as_json: bool,
    detach: bool,
) -> None:
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        click.echo(json.dumps(net.status().to_dict(), indent=2))
    else:
        console.print(_table(net.status(), console.width))
        console.print(net.dashboards(), highlight=False)
        k, m, _ = config.erasure
        console.print(
            f"{k}-of-{m} on {config.miners} miners; user wallet [bold]user[/] in "
            f"{net.wallet_path}\n"
            f"try: subnet upload --url {net.validator_urls[0]} --wallet-path {net.wallet_path} "
            "FILE",
            highlight=False,
        )
    if detach:
        if not as_json:
            console.print(f"stop it with: subnet localnet down --dir {net.root}", highlight=False)
        return
    _foreground(net, console)


def _foreground(net: LocalNet, console: Console) -> None:
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    # Ctrl-C is this loop's way out, even when started with SIGINT ignored (as a shell
    # does to what it starts in the background): otherwise nothing would stop the net.
    signal.signal(signal.SIGINT, interrupt)
    console.print("running; Ctrl-C stops every service", highlight=False)
    reported: set[str] = set()
    try:
        while True:
            time.sleep(0.5)
            for service in net.exited():
                if service.name not in reported:
                    reported.add(service.name)
                    console.print(
                        f"[red]{service.name} exited[/]; see {service.log}", highlight=False
                    )
            if len(reported) == len(net.services):
                console.print("every service has exited", highlight=False)
                return
    except KeyboardInterrupt:
        console.print("stopping…", highlight=False)
    finally:
        stopped = net.down()
        if stopped:
            console.print(f"stopped {len(stopped)} services", highlight=False)


@localnet.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
def status(root: Path, as_json: bool) -> None:
    """Show each service's health, PID, URL, UID and axon on the chain, and its log.

    Exits 1 unless every service is healthy, so scripts can wait on it.

    \b
    Examples:
      subnet localnet status
      subnet localnet status --json | jq '.services[] | select(.healthy | not)'
    """
    try:
        report = LocalNet(root).status()
    except LocalNetError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif not report.services:
        click.echo(f"no local net in {report.root}: start one with `subnet localnet up`")
    else:
        console = table_console()
        console.print(_table(report, console.width))
    if not report.healthy:
        raise SystemExit(1)


@localnet.command()
@dir_option
def down(root: Path) -> None:
    """Stop every process the local net started (SIGTERM, then SIGKILL after 10 s).

    Wallets, data, logs and the chain stay in --dir for the next `up`.

    \b
    Example:
      subnet localnet down --dir /tmp/net
    """
    try:
        stopped = LocalNet(root).down()
    except LocalNetError as exc:
        raise click.ClickException(str(exc)) from None
    names = ", ".join(s.name for s in stopped) or "nothing was running"
    click.echo(f"stopped: {names}")


def _table(report: NetStatus, width: int) -> Table:
    """Every service on a line. Narrow terminals get short hotkeys, no ``http://``, and no
    role and log columns (the service's name says both); --json has everything."""
    wide = width >= 160
    block = "" if report.metagraph is None else f" at block {report.metagraph.block}"
    table = Table(title=f"Local net in {report.root}{block}", box=box.SIMPLE_HEAD)
    columns = ["service", "role", "state", "uid", "pid", "url", "hotkey", "log"]
    if width < 120:
        columns.remove("role")
        columns.remove("log")
        table.caption = f"logs: {report.root / 'logs'}/<service>.log"
    for column in columns:
        table.add_column(column, justify="right" if column in {"uid", "pid"} else "left")
    for s in report.services:
        state = "[green]healthy" if s.healthy else "[yellow]unhealthy"
        if not s.alive:
            state = "[red]stopped"
        hotkey = s.service.hotkey or ""
        log = Path(s.service.log)
        if log.is_relative_to(report.root):
            log = log.relative_to(report.root)
        cells = {
            "service": s.service.name,
            "role": s.service.role,
            "state": state,
            "uid": "" if s.uid is None else str(s.uid),
            "pid": "" if s.service.pid is None else str(s.service.pid),
            "url": s.service.url if width >= 120 else f"{s.service.host}:{s.service.port}",
            "hotkey": hotkey if wide or not hotkey else f"{hotkey[:6]}…{hotkey[-4:]}",
            "log": str(log),
        }
        table.add_row(*(cells[c] for c in columns))
    return table
