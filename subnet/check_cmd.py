"""``subnet check REF...``: each object's health, as the validator's repairer sees it."""

from __future__ import annotations

import json
from typing import Any

import click

from subnet.gateway_client import GatewayClient, GatewayError
from subnet.health_view import EXIT_HELP, exit_status, report_lines
from subnet.objects_cmd import Connection, _run, connection_options


@click.command(epilog=EXIT_HELP)
@click.argument("refs", nargs=-1, required=True)
@connection_options
def check(refs: tuple[str, ...], conn: Connection, as_json: bool) -> None:
    """Check objects' health: shares per segment against k and m, like tahoe check. Per
    object: the healthy shares of each segment against k (needed to read it) and m
    (stored), the segments short of a share, and when a share last passed a challenge.
    REF is an id, a name, or a folder (data3/).

    A share is healthy when a miner that is registered, seen lately and not disqualified
    holds it and has not failed its challenges: the validator's repairer counts the same
    way and rebuilds what is short when it can.
    """

    async def body(client: GatewayClient) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for ref in refs:
            if not ref.endswith("/"):
                found += await client.health(ref)
                continue
            inside = await client.health(prefix=ref)
            if not inside:
                raise GatewayError(404, "not_found", f"no objects named {ref}...")
            found += inside
        return found

    objects = _run(body, conn)
    if as_json:
        click.echo(json.dumps({"objects": objects, "exit_status": exit_status(objects)}))
    else:
        for number, o in enumerate(objects):
            click.echo(("\n" if number else "") + "\n".join(report_lines(o)))
    raise SystemExit(exit_status(objects))
