"""``subnet audit``: check a validator's challenge log."""

from __future__ import annotations

import json
from pathlib import Path

import click

from validator.audit_log import LogEntry, verify_log


@click.group()
def audit() -> None:
    """Audit challenge logs: who was challenged, how they answered, and whether the log is whole."""


@audit.command("verify")
@click.argument("log_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--validator", help="The hotkey every entry must be signed by (default: the first's)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify_cmd(log_file: Path, validator: str | None, as_json: bool) -> None:
    """Check the chain of hashes and every signature of an exported log (JSON lines).

    Names the first bad entry and exits 1; exits 0 when every entry checks out.
    """
    entries = []
    for number, line in enumerate(log_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(LogEntry.from_json(line))
        except (ValueError, TypeError) as exc:
            raise click.ClickException(f"{log_file}:{number}: not a log entry ({exc})") from None
    problem = verify_log(entries, validator)
    if as_json:
        bad = None if problem is None else {"seq": problem.seq, "reason": problem.reason}
        click.echo(json.dumps({"entries": len(entries), "ok": problem is None, "first_bad": bad}))
    elif problem is None:
        click.echo(f"OK: {len(entries)} entries, chain and signatures intact")
    else:
        click.echo(f"BAD entry {problem.seq} (line {problem.seq + 1}): {problem.reason}")
    if problem is not None:
        raise SystemExit(1)
