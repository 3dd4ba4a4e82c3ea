"""Encode and decode throughput of the full erasure pipeline, against raw zfec in one run.

The pipeline is what a validator runs per object: segmenting, zfec in column stripes and a
keyed-BLAKE3 Merkle tree per share (whose root is the shard id). The baseline is
single-threaded ``zfec.Encoder.encode`` over the same bytes, measured two ways: one call per
segment (the plain use of the API) and in 256 KiB column stripes (its fastest use here).
Figures are MB/s of object bytes, medians of ``--runs`` runs.

    python -m bench.erasure [--size-mib 256] [--runs 3] [--out bench/results/erasure.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a file, this script's folder comes first on sys.path and its name would shadow the
# erasure package; put the project root there instead, so `python bench/erasure.py` works
# like `python -m bench.erasure`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import os
import statistics
import time
from collections.abc import Callable

import zfec

from bench.report import emit
from erasure import ErasureParams, ObjectEncoder, decode_segment_shares
from erasure.codec import STRIPE
from erasure.params import MiB

CHUNK = 1 * MiB


def median_rate(size: int, runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return size / statistics.median(times) / 1e6


def raw_zfec(data: memoryview, params: ErasureParams, stripe: int | None) -> None:
    k, m, seg = params.k, params.m, params.segment_size
    encoder = zfec.Encoder(k, m)
    wanted = tuple(range(k, m))
    for base in range(0, len(data), seg):
        block = -(-min(seg, len(data) - base) // k)
        step = stripe or block
        for start in range(0, block, step):
            end = min(start + step, block)
            blocks = [data[base + i * block + start : base + i * block + end] for i in range(k)]
            if len(blocks[-1]) == end - start:  # the object's tail is timed by the pipeline only
                encoder.encode(blocks, wanted)


def pipeline_encode(data: memoryview, params: ErasureParams, workers: int, encrypt: bool) -> None:
    chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
    for _segment in ObjectEncoder(params, encrypt=encrypt, workers=workers).encode(chunks):
        pass


def measure(data: memoryview, k: int, m: int, runs: int) -> dict[str, object]:
    params = ErasureParams(k=k, m=m)
    size = len(data)
    result: dict[str, object] = {"k": k, "m": m, "segment_size": params.segment_size}
    raw_call = median_rate(size, runs, lambda: raw_zfec(data, params, None))
    raw_striped = median_rate(size, runs, lambda: raw_zfec(data, params, STRIPE))
    one = median_rate(size, runs, lambda: pipeline_encode(data, params, 1, False))
    two = median_rate(size, runs, lambda: pipeline_encode(data, params, 2, False))
    sealed = median_rate(size, runs, lambda: pipeline_encode(data, params, 2, True))

    # Decode from the m-k check shares plus the fewest primaries: the costliest case.
    encoder = ObjectEncoder(params, encrypt=False)
    chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
    held = [
        {s.share: s.data for s in seg.shards if s.share >= m - k} for seg in encoder.encode(chunks)
    ]
    manifest = encoder.manifest()

    def decode() -> None:
        for i in range(len(held)):
            decode_segment_shares(manifest, i, held[i])

    decode_rate = median_rate(size, runs, decode)
    result.update(
        raw_zfec_per_segment_mb_s=round(raw_call, 1),
        raw_zfec_striped_mb_s=round(raw_striped, 1),
        encode_1_thread_mb_s=round(one, 1),
        encode_2_threads_mb_s=round(two, 1),
        encode_2_threads_encrypted_mb_s=round(sealed, 1),
        decode_from_check_shares_verified_mb_s=round(decode_rate, 1),
        ratio_1_thread_vs_raw_per_segment=round(one / raw_call, 2),
        ratio_1_thread_vs_raw_striped=round(one / raw_striped, 2),
        ratio_2_threads_vs_raw_per_segment=round(two / raw_call, 2),
        ratio_2_threads_vs_raw_striped=round(two / raw_striped, 2),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/erasure.json"))
    args = parser.parse_args()
    data = memoryview(os.urandom(args.size_mib * MiB))
    report = {
        "bench": "erasure",
        "command": " ".join(["python", *sys.argv]),
        "input_mib": args.size_mib,
        "runs_per_figure": args.runs,
        "results": [measure(data, k, m, args.runs) for k, m in ((4, 8), (10, 16))],
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
