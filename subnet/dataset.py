"""Deterministic synthetic datasets for testing uploads, and checking a copy of one.

File sizes are lognormal (FileTAO's choice: median 3 MiB, sigma 1.5), scaled so the dataset
adds up to the requested size; an empty and a one-byte file are always included. Contents
are a BLAKE3 keystream of the seed and the file's index, so the same arguments always give
the same bytes. ``SHA256SUMS`` beside the files is in ``sha256sum`` format, so
``sha256sum -c SHA256SUMS`` checks a copy without this project.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

SUMS = "SHA256SUMS"
CHUNK = 1024 * 1024
MEDIAN = 3 * 1024 * 1024
SIGMA = 1.5


def plan_sizes(total: int, files: int, seed: int) -> list[int]:
    """``files`` sizes summing to ``total``: 0 and 1 byte first, the rest lognormal."""
    if files < 2:
        raise ValueError("a dataset has at least 2 files (the empty and the one-byte file)")
    if total < 1:
        raise ValueError("a dataset needs at least 1 byte for its one-byte file")
    if files == 2 and total != 1:
        raise ValueError("2 files are the empty and the 1-byte file: ask for more files")
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a secret
    draws = [rng.lognormvariate(math.log(MEDIAN), SIGMA) for _ in range(files - 2)]
    budget = total - 1
    scale = budget / sum(draws) if draws else 0.0
    sizes = [int(d * scale) for d in draws]
    if sizes:
        sizes[sizes.index(max(sizes))] += budget - sum(sizes)  # exact total
    return [0, 1, *sizes]


def relative_path(index: int) -> str:
    """Spread files over nested folders, so uploads must recurse."""
    return f"part-{index % 4}/group-{index % 3}/file-{index:05d}.bin"


def keystream(seed: int, index: int, size: int) -> Iterator[bytes]:
    hasher = blake3(f"storage-subnet dataset {seed} {index}".encode())
    for offset in range(0, size, CHUNK):
        yield hasher.digest(length=min(CHUNK, size - offset), seek=offset)


@dataclass(frozen=True, slots=True)
class DatasetFile:
    path: str
    size: int
    sha256: str


def generate(
    root: Path,
    total: int,
    files: int,
    seed: int,
    on_bytes: Callable[[int], None] = lambda _n: None,
) -> list[DatasetFile]:
    """Write the dataset under ``root`` (which must be empty or absent) and its SHA256SUMS."""
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty: pick a new folder for the dataset")
    written = []
    for index, size in enumerate(plan_sizes(total, files, seed)):
        rel = relative_path(index)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with path.open("wb") as out:
            for chunk in keystream(seed, index, size):
                out.write(chunk)
                digest.update(chunk)
                on_bytes(len(chunk))
        written.append(DatasetFile(rel, size, digest.hexdigest()))
    lines = "".join(f"{f.sha256}  {f.path}\n" for f in written)
    (root / SUMS).write_text(lines)
    return written


@dataclass(frozen=True, slots=True)
class Verification:
    checked: int
    missing: tuple[str, ...]
    mismatched: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unexpected)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify(root: Path, sums: Path | None = None) -> Verification:
    """Check every file listed in SHA256SUMS, and that no other file is present."""
    sums = sums or root / SUMS
    if not sums.is_file():
        raise FileNotFoundError(f"no {SUMS} at {sums}: give the dataset's folder")
    expected: dict[str, str] = {}
    for number, line in enumerate(sums.read_text().splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ValueError(f"{sums}:{number}: not a sha256sum line")
        expected[rel] = digest
    missing, mismatched = [], []
    for rel, digest in expected.items():
        path = root / rel
        if not path.is_file():
            missing.append(rel)
        elif sha256_of(path) != digest:
            mismatched.append(rel)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p != sums}
    unexpected = sorted(present - set(expected))
    return Verification(len(expected), tuple(missing), tuple(mismatched), tuple(unexpected))
