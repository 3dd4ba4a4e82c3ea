"""How ``subnet check`` and ``subnet ls --health`` show objects' health, and the exit status
they end with (pure: the validator's JSON in, text out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

# The exit status a health report ends with: the worst object's. 1 and 2 stay click's
# (an error, a usage mistake).
EXIT_STATUS = {"healthy": 0, "at_risk": 3, "lost": 4}
EXIT_HELP = (
    "Exit status: 0 when every object is healthy, 3 when one is at risk (a segment short of "
    "its m shares, still readable), 4 when one is lost (a segment below k shares)."
)
WORDS = {"healthy": "healthy", "at_risk": "AT RISK", "lost": "LOST"}


def exit_status(objects: Sequence[Mapping[str, Any]]) -> int:
    return max((EXIT_STATUS[str(o["status"])] for o in objects), default=0)


def since(when: str | None, now: datetime | None = None) -> str:
    """``2026-12-06 21:30:02 UTC (12 s ago)``, or ``never`` (no challenge passed yet)."""
    if when is None:
        return "never"
    moment = datetime.fromisoformat(when)
    ago = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    age = f"{ago} s" if ago < 120 else f"{ago // 60} min" if ago < 7200 else f"{ago // 3600} h"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC ({age} ago)"


def _runs(indices: Sequence[int]) -> str:
    """``0-2, 5`` for [0, 1, 2, 5]."""
    parts: list[str] = []
    at = 0
    while at < len(indices):
        end = at
        while end + 1 < len(indices) and indices[end + 1] == indices[end] + 1:
            end += 1
        parts.append(f"{indices[at]}" if at == end else f"{indices[at]}-{indices[end]}")
        at = end + 1
    return ", ".join(parts)


def shares_summary(o: Mapping[str, Any]) -> str:
    """Shares per segment, grouped: ``3 segments with 4 of 4``."""
    counts: dict[int, int] = {}
    for n in o["shares"]:
        counts[n] = counts.get(n, 0) + 1
    m = o["m"]
    return "; ".join(
        f"{count} segment{'s' if count > 1 else ''} with {n} of {m}"
        for n, count in sorted(counts.items())
    )


def report_lines(o: Mapping[str, Any]) -> list[str]:
    """One object, as ``subnet check`` prints it."""
    lines = [
        f"{o['name']}  ({o['id']})",
        f"  status:        {WORDS[o['status']]}",
        f"  encoding:      {o['k']}-of-{o['m']}: any {o['k']} of a segment's {o['m']} shares "
        f"read it; {o['size']:,} B in {o['segments']} segment{'s' if o['segments'] != 1 else ''}",
        f"  shares:        {shares_summary(o) or 'no segments'}",
    ]
    if o["at_risk_segments"]:
        lines.append(f"  short of m:    segments {_runs(o['at_risk_segments'])}")
    if o["lost_segments"]:
        lines.append(f"  below k:       segments {_runs(o['lost_segments'])} (unreadable)")
    lines.append(f"  last verified: {since(o['last_verified'])}")
    return lines


def health_table(objects: Sequence[Mapping[str, Any]]) -> Table:
    """``subnet ls --health``: one row per object."""
    table = Table()
    for column in ("name", "id", "size", "k-of-m", "fewest shares", "short", "status",
                   "last verified"):  # fmt: skip
        table.add_column(column, justify="right" if column == "size" else "left")
    for o in objects:
        table.add_row(
            o["name"], o["id"], f"{o['size']:,}", f"{o['k']}-of-{o['m']}",
            f"{o['fewest_shares']} of {o['m']}", str(len(o["at_risk_segments"])),
            WORDS[o["status"]], since(o["last_verified"]),
        )  # fmt: skip
    return table
