"""``subnet s3 keys``: S3 access keys for a validator's users (run where the validator
runs: it opens the validator's database and the key file in its data dir)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy.orm import sessionmaker

from protocol.db import make_engine, upgrade
from validator.s3.keys import KEY_FILE, AccessKeys, KeyFileError
from validator.settings import DEFAULT_DATA_DIR, ValidatorSettings

_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    envvar="SUBNET_VALIDATOR_DATA_DIR",
    show_default=True,
    help="The validator's data dir (its database, and the key that encrypts S3 secrets).",
)
_DB = click.option(
    "--database-url",
    default="",
    envvar="SUBNET_VALIDATOR_DATABASE_URL",
    help="The validator's database, if not SQLite in --data-dir.",
)


def _keys(data_dir: Path, database_url: str) -> AccessKeys:
    settings = ValidatorSettings(data_dir=data_dir, database_url=database_url)
    data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.db_url, "validator")
    sessions = sessionmaker(make_engine(settings.db_url), expire_on_commit=False)
    try:
        return AccessKeys(sessions, data_dir / KEY_FILE)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def s3() -> None:
    """The validator's S3 API (subnet validator run --s3-port)."""


@s3.group()
def keys() -> None:
    """Access keys: one or more per user; a secret is shown once, at creation."""


@keys.command()
@click.option("--user", required=True, help="The user the key acts as (made if unknown).")
@_DIR
@_DB
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(user: str, data_dir: Path, database_url: str, as_json: bool) -> None:
    """Make a key; prints the access key and the secret (shown only now)."""
    access_key, secret = _keys(data_dir, database_url).create(user)
    if as_json:
        click.echo(json.dumps({"user": user, "access_key": access_key, "secret_key": secret}))
        return
    click.echo(f"access key: {access_key}")
    click.echo(f"secret key: {secret}")
    click.echo("The secret is not shown again; revoke the key and make another if it is lost.")


@keys.command(name="list")
@click.option("--user", default=None, help="Only this user's keys.")
@_DIR
@_DB
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_keys(user: str | None, data_dir: Path, database_url: str, as_json: bool) -> None:
    """Every key (never a secret), with its user and whether it is revoked."""
    for info in _keys(data_dir, database_url).list(user):
        revoked = info.revoked_at.isoformat() if info.revoked_at else None
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "access_key": info.access_key,
                        "user": info.user,
                        "created_at": info.created_at.isoformat(),
                        "revoked_at": revoked,
                    }
                )
            )
        else:
            state = f"revoked {revoked}" if revoked else "active"
            click.echo(f"{info.access_key}  {info.user}  {state}")


@keys.command()
@click.argument("access_key")
@_DIR
@_DB
def revoke(access_key: str, data_dir: Path, database_url: str) -> None:
    """Refuse every request signed with ACCESS_KEY from now on."""
    if not _keys(data_dir, database_url).revoke(access_key):
        raise click.ClickException(f"no active key {access_key}")
    click.echo(f"revoked {access_key}")
