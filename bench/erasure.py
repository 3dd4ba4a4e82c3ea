"""Encode and decode throughput of the full erasure pipeline, against raw codecs in one run.

The pipeline is what a validator runs per object: segmenting, the codec in column stripes and
a keyed-BLAKE3 Merkle tree per share (whose root is the shard id). It runs with both codecs,
zfec and isal (ISA-L Cauchy Reed-Solomon through pyeclib), over the same bytes. Baselines:
single-threaded ``zfec.Encoder.encode`` measured two ways, one call per segment (the plain
use of the API) and in 256 KiB column stripes (its fastest use here); and pyeclib's
``ECDriver.encode`` (isa_l_rs_cauchy) over contiguous stripes of k x 256 KiB (1 MiB for k=4),
copy into ``bytes`` included, since pyeclib takes nothing else. Figures are MB/s of object
bytes, medians of ``--runs`` runs; zfec's keep their names, isal's start with ``isal_``.
One-thread figures are also given by CPU time (``_cpu_``), which a loaded machine disturbs
far less than the wall clock.

    python -m bench.erasure [--size-mib 256] [--runs 3] [--out bench/results/erasure.json]
    python -m bench.erasure --smoke --out /tmp/erasure.json   # seconds: 32 MiB, one run
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
from pyeclib.ec_iface import ECDriver

from bench.report import command, emit
from erasure import ErasureParams, ObjectEncoder, decode_segment_shares
from erasure.codec import STRIPE
from erasure.params import MiB

CHUNK = 1 * MiB


def median_rates(size: int, runs: int, fn: Callable[[], object]) -> tuple[float, float]:
    """MB/s by the wall clock and by this process's CPU time. CPU time barely moves when other
    processes load the machine, but it means MB/s only for one-thread figures."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return size / statistics.median(walls) / 1e6, size / statistics.median(cpus) / 1e6


def median_rate(size: int, runs: int, fn: Callable[[], object]) -> float:
    return median_rates(size, runs, fn)[0]


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


def raw_isal(data: memoryview, params: ErasureParams) -> None:
    driver = ECDriver(k=params.k, m=params.m - params.k, ec_type="isa_l_rs_cauchy")
    step = STRIPE * params.k
    for start in range(0, len(data), step):  # pyeclib pads a short last stripe itself
        driver.encode(bytes(data[start : start + step]))


def pipeline_encode(data: memoryview, params: ErasureParams, workers: int, encrypt: bool) -> None:
    chunks = (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
    for _segment in ObjectEncoder(params, encrypt=encrypt, workers=workers).encode(chunks):
        pass


def pipeline(data: memoryview, params: ErasureParams, runs: int) -> dict[str, float]:
    """Encode (1 and 2 threads, 2 threads sealed) and decode figures with ``params.codec``."""
    k, m, size = params.k, params.m, len(data)
    one, one_cpu = median_rates(size, runs, lambda: pipeline_encode(data, params, 1, False))
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

    decoded, decoded_cpu = median_rates(size, runs, decode)
    return {
        "encode_1_thread_mb_s": one,
        "encode_2_threads_mb_s": two,
        "encode_2_threads_encrypted_mb_s": sealed,
        "decode_from_check_shares_verified_mb_s": decoded,
        "encode_1_thread_cpu_mb_s": one_cpu,
        "decode_from_check_shares_verified_cpu_mb_s": decoded_cpu,
    }


def measure(data: memoryview, k: int, m: int, runs: int) -> dict[str, object]:
    params = ErasureParams(k=k, m=m)
    size = len(data)
    result: dict[str, object] = {"k": k, "m": m, "segment_size": params.segment_size}
    raw_call = median_rate(size, runs, lambda: raw_zfec(data, params, None))
    raw_striped, raw_striped_cpu = median_rates(size, runs, lambda: raw_zfec(data, params, STRIPE))
    raw_isal_rate, raw_isal_cpu = median_rates(size, runs, lambda: raw_isal(data, params))
    zfec_figures = pipeline(data, params, runs)
    isal_figures = pipeline(data, ErasureParams(k=k, m=m, codec="isal"), runs)
    one, two = zfec_figures["encode_1_thread_mb_s"], zfec_figures["encode_2_threads_mb_s"]
    result.update(
        raw_zfec_per_segment_mb_s=round(raw_call, 1),
        raw_zfec_striped_mb_s=round(raw_striped, 1),
        raw_isal_striped_mb_s=round(raw_isal_rate, 1),
        raw_zfec_striped_cpu_mb_s=round(raw_striped_cpu, 1),
        raw_isal_striped_cpu_mb_s=round(raw_isal_cpu, 1),
        **{name: round(rate, 1) for name, rate in zfec_figures.items()},
        **{f"isal_{name}": round(rate, 1) for name, rate in isal_figures.items()},
        ratio_1_thread_vs_raw_per_segment=round(one / raw_call, 2),
        ratio_1_thread_vs_raw_striped=round(one / raw_striped, 2),
        ratio_2_threads_vs_raw_per_segment=round(two / raw_call, 2),
        ratio_2_threads_vs_raw_striped=round(two / raw_striped, 2),
        ratio_raw_isal_vs_raw_zfec_striped=round(raw_isal_rate / raw_striped, 2),
        ratio_isal_vs_zfec_2_threads=round(isal_figures["encode_2_threads_mb_s"] / two, 2),
        ratio_isal_vs_zfec_decode=round(
            isal_figures["decode_from_check_shares_verified_mb_s"]
            / zfec_figures["decode_from_check_shares_verified_mb_s"],
            2,
        ),
        # The same comparisons by CPU time: steadier on a loaded machine.
        ratio_raw_isal_vs_raw_zfec_striped_cpu=round(raw_isal_cpu / raw_striped_cpu, 2),
        ratio_isal_vs_zfec_1_thread_cpu=round(
            isal_figures["encode_1_thread_cpu_mb_s"] / zfec_figures["encode_1_thread_cpu_mb_s"], 2
        ),
        ratio_isal_vs_zfec_decode_cpu=round(
            isal_figures["decode_from_check_shares_verified_cpu_mb_s"]
            / zfec_figures["decode_from_check_shares_verified_cpu_mb_s"],
            2,
        ),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/erasure.json"))
    parser.add_argument("--smoke", action="store_true", help="32 MiB (two segments), one run")
    args = parser.parse_args()
    if args.smoke:
        args.size_mib, args.runs = 32, 1
    data = memoryview(os.urandom(args.size_mib * MiB))
    report = {
        "bench": "erasure",
        "command": command("bench.erasure"),
        "input_mib": args.size_mib,
        "runs_per_figure": args.runs,
        "results": [measure(data, k, m, args.runs) for k, m in ((4, 8), (10, 16))],
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
