"""The local round-trip demo: a dataset through the erasure core and back, with losses.

Until the local subnet exists this is what ``make demo`` shows, honestly and locally:
generate files, encode each into shards on disk, delete m-k shards of every segment, rebuild
from the survivors (each checked against its shard id), and compare sha256 of every file.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from blake3 import blake3

from erasure import (
    Capability,
    EncodedSegment,
    ErasureParams,
    Manifest,
    ObjectEncoder,
    decode_segment_shares,
)
from erasure.params import KiB, MiB
from subnet.dataset import sha256_of

READ_CHUNK = 1 * MiB


@dataclass(frozen=True, slots=True)
class FileResult:
    name: str
    size: int
    segments: int
    shards_written: int
    shards_deleted: int
    sha256_in: str
    sha256_out: str
    capability: str

    @property
    def ok(self) -> bool:
        return self.sha256_in == self.sha256_out


def dataset_sizes(total_mib: int, segment_size: int) -> list[int]:
    """Edge sizes first (empty, one byte, just around a segment), then bulk files."""
    seg = segment_size
    sizes = [0, 1, 4 * KiB + 3, seg - 1, seg, seg + 1]
    bulk = max(0, total_mib * MiB - sum(sizes))
    return [*sizes, bulk // 2, bulk - bulk // 2]


def generate_dataset(root: Path, total_mib: int, segment_size: int, seed: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(dataset_sizes(total_mib, segment_size)):
        path = root / f"file-{i:02d}.bin"
        with path.open("wb") as out:
            stream = blake3(f"demo {seed} {i}".encode()).digest(length=size) if size else b""
            out.write(stream)
        paths.append(path)
    return paths


def read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as src:
        while chunk := src.read(READ_CHUNK):
            yield chunk


def shard_path(store: Path, shard_id: str) -> Path:
    return store / shard_id[:2] / shard_id


def write_segment(store: Path, segment: EncodedSegment) -> None:
    for shard in segment.shards:
        path = shard_path(store, shard.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            out.writelines(shard.pieces)
        path.with_suffix(".tree").write_bytes(shard.tree.to_bytes())


def round_trip(
    source: Path,
    work: Path,
    params: ErasureParams,
    rng: random.Random,
    on_bytes: Callable[[int], None] = lambda _n: None,
) -> FileResult:
    """Encode one file to shards on disk, drop m-k per segment, decode and compare."""
    store = work / "shards"
    encoder = ObjectEncoder(params, encrypt=True, workers=2)
    written = 0
    for segment in encoder.encode(read_chunks(source)):
        write_segment(store, segment)
        written += len(segment.shards)
        on_bytes(segment.info.size)
    manifest = encoder.manifest()
    capability = encoder.capability()

    deleted = 0
    survivors: list[list[int]] = []
    for info in manifest.segments:
        lost = set(rng.sample(range(params.m), params.m - params.k))
        for share in lost:
            shard_path(store, info.shard_ids[share]).unlink()
            deleted += 1
        survivors.append([s for s in range(params.m) if s not in lost])

    restored = work / "restored" / source.name
    restored.parent.mkdir(parents=True, exist_ok=True)
    _decode_to(restored, manifest, capability, store, survivors)
    return FileResult(
        name=source.name,
        size=source.stat().st_size,
        segments=len(manifest.segments),
        shards_written=written,
        shards_deleted=deleted,
        sha256_in=sha256_of(source),
        sha256_out=sha256_of(restored),
        capability=str(capability),
    )


def _decode_to(
    target: Path,
    manifest: Manifest,
    capability: Capability,
    store: Path,
    survivors: list[list[int]],
) -> None:
    if manifest.verifier_hash() != capability.verifier:
        raise RuntimeError("manifest does not match the capability's verifier hash")
    with target.open("wb") as out:
        for index, info in enumerate(manifest.segments):
            shares = {
                s: shard_path(store, info.shard_ids[s]).read_bytes() for s in survivors[index]
            }
            out.write(decode_segment_shares(manifest, index, shares, capability.key))


def prepare(work: Path, total_mib: int, segment_size: int, seed: int) -> list[Path]:
    """A fresh work folder holding the generated dataset."""
    if work.exists():
        shutil.rmtree(work)
    return generate_dataset(work / "dataset", total_mib, segment_size, seed)
