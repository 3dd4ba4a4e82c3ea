"""``subnet durability``: what a code and a repair policy are worth in nines, for a churn rate.

The figures come from the pure model in :mod:`validator.durability`; see docs/durability.md
for the inputs measured here and what the model leaves out.
"""

from __future__ import annotations

import json
import math

import click
from rich.table import Table

from protocol.settings import parse_size
from subnet.tables import table_console
from validator.durability import (
    MEASURED_REBUILD_BYTES_PER_SECOND,
    DurabilityInputs,
    durability,
    parse_rate,
)


def _probability(p: float) -> str:
    return "0" if p <= 0 else f"{p:.3g}"


def _nines(n: float) -> str:
    return "inf" if math.isinf(n) else f"{n:.1f}"


@click.command()
@click.option("--k", default=4, show_default=True, help="Shares needed to read a segment.")
@click.option("--m", default=8, show_default=True, help="Shares stored per segment.")
@click.option(
    "--churn",
    default="5%/day",
    show_default=True,
    help="Miners failing per period, e.g. 5%/day, 0.5%/hour, 2%/year.",
)
@click.option(
    "--outage-hours",
    type=float,
    default=None,
    help="Failures are outages of this mean length (only those outlasting detection cost "
    "shares); default: failures are for good.",
)
@click.option(
    "--repair-threshold",
    type=int,
    default=None,
    help="Repair when health (healthy shares - k) is below this; default m - k.",
)
@click.option("--challenge-seconds", default=30.0, show_default=True)
@click.option("--containment-rechecks", default=3, show_default=True)
@click.option("--repair-seconds", default=30.0, show_default=True)
@click.option(
    "--rebuild-rate",
    default=f"{MEASURED_REBUILD_BYTES_PER_SECOND / 1e6:g}MB",
    show_default=True,
    help="Shard bytes rebuilt per second (bench/repair_time.py measures it).",
)
@click.option("--miner-size", default="100GiB", show_default=True, help="Shard bytes per miner.")
@click.option("--segments", default=64, show_default=True, help="Segments per object.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def durability_cmd(
    k: int,
    m: int,
    churn: str,
    outage_hours: float | None,
    repair_threshold: int | None,
    challenge_seconds: float,
    containment_rechecks: int,
    repair_seconds: float,
    rebuild_rate: str,
    miner_size: str,
    segments: int,
    as_json: bool,
) -> None:
    """The expected annual loss of a segment and an object, and repair traffic, in nines."""
    try:
        inputs = DurabilityInputs(
            k=k,
            m=m,
            failure_rate=parse_rate(churn),
            repair_threshold=repair_threshold,
            challenge_seconds=challenge_seconds,
            containment_rechecks=containment_rechecks,
            repair_seconds=repair_seconds,
            rebuild_bytes_per_second=float(parse_size(rebuild_rate)),
            miner_bytes=float(parse_size(miner_size)),
            outage_seconds=None if outage_hours is None else outage_hours * 3600,
            segments_per_object=segments,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    result = durability(inputs)
    if as_json:
        figures = result.to_dict()
        click.echo(json.dumps({k: _json_safe(v) for k, v in figures.items()}, indent=2))
        return
    table = Table(title=f"{k}-of-{m}, churn {churn}, repair below health {inputs.threshold}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    r = result
    rows = [
        ("detection (mean)", f"{r.detection_seconds:.0f} s"),
        ("repair window (mean, failure to rebuilt)", f"{r.window_seconds / 60:.1f} min"),
        ("segment lost per year", _probability(r.segment_loss_per_year)),
        ("segment nines", _nines(r.segment_nines)),
        (f"object of {segments} segments lost per year", _probability(r.object_loss_per_year)),
        ("object nines", _nines(r.object_nines)),
        ("  cross-check: Backblaze fixed periods", _probability(r.backblaze_segment_loss_per_year)),
        ("  cross-check: Storj Poisson", _probability(r.poisson_segment_loss_per_year)),
        ("time below the repair threshold", f"{r.fraction_below_threshold:.2%}"),
        ("repair bytes per stored byte per year", f"{r.repair_bytes_per_stored_byte_per_year:.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    table_console().print(table)


def _json_safe(value: float | int | None) -> float | int | None:
    """JSON has no infinity: a loss of 0 has no finite nines."""
    if isinstance(value, float) and math.isinf(value):
        return None
    return value
