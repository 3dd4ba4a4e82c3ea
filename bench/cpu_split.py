"""CPU per process of CLI uploads and downloads, this tree against a git revision, same run.

Issue 20 asks that each cut be measured alone, and this machine is shared: so the baseline
is another revision of this repository (checked out into a temporary git worktree), run as
a second local subnet beside this tree's (4-of-8, 8 miners, each a process, on its own
loopback net), the two measured in alternation, the same file, the same minutes. Per step
(a ``subnet upload`` of one file, its ``subnet download``) it reports the CPU seconds of the
CLI, the validator and the eight miners together, and the wall time; medians over the runs,
and this tree's over the baseline's.

    python -m bench.cpu_split --baseline main~3 [--size-mib 256] [--runs 3]
    python -m bench.cpu_split --smoke --out /tmp/cpu.json
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench.cluster import LocalSubnet, local_subnet, precompile, random_file
from bench.peers import Ours
from bench.report import command, emit

MiB = 2**20
ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PARTS = ("cli", "validator", "miners")


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """``rev`` of this repository in a temporary worktree, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="cpu-split-") as scratch:
        tree = Path(scratch) / "tree"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", "-q", str(tree), rev], check=True)
        try:
            yield tree
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(tree)], check=False)


class Side:
    """One tree's subnet and CLI: every process of it imports that tree (PYTHONPATH)."""

    def __init__(self, name: str, tree: Path, net: LocalSubnet) -> None:
        self.name, self.tree, self.net = name, tree, net
        self.cli = Ours(net)
        self.cli.env["PYTHONPATH"] = str(tree)
        self.samples: dict[str, list[dict[str, float]]] = {"upload": [], "download": []}

    def measure(self, step: str, path: Path, ref: str = "") -> str:
        os.sync()
        pids = [p.pid for p in self.net.miners]
        before = (children_cpu(), process_cpu(self.net.validator.pid), sum(map(process_cpu, pids)))
        started = time.perf_counter()
        if step == "upload":
            ref = self.cli.cli_upload(path)
        else:
            self.cli.cli_download(ref, path)
        seconds = time.perf_counter() - started
        after = (children_cpu(), process_cpu(self.net.validator.pid), sum(map(process_cpu, pids)))
        sample = {part: b - a for part, a, b in zip(PARTS, before, after, strict=True)}
        self.samples[step].append({**sample, "seconds": seconds})
        return ref

    def medians(self) -> dict[str, dict[str, float]]:
        return {
            step: {
                key: round(statistics.median(s[key] for s in samples), 3)
                for key in (*PARTS, "seconds")
            }
            for step, samples in self.samples.items()
        }


def start(stack: ExitStack, name: str, tree: Path, root: Path, net: str) -> Side:
    os.environ["PYTHONPATH"] = str(tree)  # the services started now import this tree
    precompile(tree)
    return Side(name, tree, stack.enter_context(local_subnet(root / name, 4, 8, 8, net=net)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="a git revision (default HEAD)")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/cpu_split.json"))
    parser.add_argument("--smoke", action="store_true", help="4 MiB, one run")
    args = parser.parse_args()
    size, runs = (4 * MiB, 1) if args.smoke else (args.size_mib * MiB, args.runs)
    out = args.out.resolve()
    saved = os.environ.get("PYTHONPATH")
    with tempfile.TemporaryDirectory(prefix="cpu-split-") as scratch, ExitStack() as stack:
        root = Path(scratch)
        os.chdir(root)  # so that `-m subnet` finds the tree on PYTHONPATH, not this checkout
        baseline_tree = stack.enter_context(checkout(args.baseline))
        sides = [
            start(stack, "this", ROOT, root, "127.0.0"),
            start(stack, "baseline", baseline_tree, root, "127.0.1"),
        ]
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved
        source = random_file(root / "source.bin", size)
        loads = []
        for run in range(runs):
            for side in sides if run % 2 == 0 else sides[::-1]:
                upload = root / f"{side.name}-{run}.bin"
                os.link(source, upload)  # named apart: the CLI names an object by its file
                ref = side.measure("upload", upload)
                side.measure("download", root / f"{side.name}-{run}.out", ref)
                (root / f"{side.name}-{run}.out").unlink()
            loads.append(os.getloadavg()[0])
        this, base = (side.medians() for side in sides)
    report: dict[str, Any] = {
        "bench": "cpu_split",
        "command": command("bench.cpu_split"),
        "size_mib": size / MiB,
        "runs": runs,
        "baseline": args.baseline,
        "load_average": [round(x, 1) for x in loads],
        "this": this,
        "base": base,
        "ratios": {
            step: {key: round(value / max(base[step][key], 1e-3), 2) for key, value in got.items()}
            for step, got in this.items()
        },
    }
    emit(report, out)


if __name__ == "__main__":
    main()
