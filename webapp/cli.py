"""Command-line entry points: `flask create-admin`, `flask seed-demo`, `flask litellm ...`, `flask keys ...`."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from webapp.extensions import db

litellm_cli = AppGroup("litellm", help="Talk to LiteLLM: simulator, status, keys, usage sync.")
keys_cli = AppGroup("keys", help="Stored secrets of API keys: re-encryption under a new ENCRYPTION_KEY.")


@click.command("create-admin")
@with_appcontext
@click.argument("email")
@click.option("--password", required=True, help="Password for the staff admin.")
@click.option("--token", "with_token", is_flag=True, help="Also issue a personal API token, printed once.")
def create_admin(email: str, password: str, with_token: bool) -> None:
    """Create a staff admin (platform operator)."""
    from webapp.auth.service import issue_personal_token
    from webapp.models import User
    from webapp.tenants.service import create_staff_user

    if db.session.scalar(sa.select(User).where(sa.func.lower(User.email) == email.lower())) is not None:
        raise click.UsageError(f"A user with email {email} exists already.")
    if len(password) < 10:
        raise click.UsageError("Use a password of at least 10 characters.")
    user = create_staff_user(email, password)
    issued = issue_personal_token(user, "created by create-admin") if with_token else None
    db.session.commit()
    click.echo(f"Created staff admin {user.email}.")
    if issued is not None:
        if issued.token.expires_at is not None:
            click.echo(f"The API token expires on {issued.token.expires_at:%Y-%m-%d %H:%M} UTC.")
        click.echo(f"API token (shown once): {issued.secret}")


@click.command("seed-demo")
@click.option("--map-simulator-keys", is_flag=True, help="Also give three simulator keys to the demo tenants.")
@click.option("--no-logins", is_flag=True, help="Do not print the demo logins (`flask demo-logins` prints them).")
@with_appcontext
def seed_demo(map_simulator_keys: bool, no_logins: bool) -> None:
    """Seed demo plans, tenants and users (idempotent)."""
    from webapp.demo import map_demo_simulator_keys, seed_demo_data

    for line in seed_demo_data():
        if not no_logins:
            click.echo(line)
    if map_simulator_keys:
        for line in map_demo_simulator_keys():
            click.echo(line)


@click.command("demo-logins")
def demo_logins() -> None:
    """Print the demo logins (`make run` prints them last, once the app answers)."""
    from webapp.demo import demo_logins as lines

    for line in lines():
        click.echo(line)


def register_commands(app: Flask) -> None:
    _load_feature_commands()
    app.cli.add_command(create_admin)
    app.cli.add_command(seed_demo)
    app.cli.add_command(demo_logins)
    app.cli.add_command(litellm_cli)
    app.cli.add_command(keys_cli)
    from webapp.usage.cli import partitions_cli

    usage_cli.add_command(partitions_cli)
    app.cli.add_command(usage_cli)
    from webapp.billing.cli import billing_cli

    app.cli.add_command(billing_cli)


def _load_feature_commands() -> None:
    """Feature modules attach their commands to `litellm_cli` when imported."""
    import importlib

    for module in FEATURE_COMMAND_MODULES:
        importlib.import_module(module)


FEATURE_COMMAND_MODULES: list[str] = ["webapp.litellm.commands", "webapp.sync.cli", "webapp.keys.commands"]
usage_cli = AppGroup("usage", help="Usage storage: PostgreSQL partitions and retention.")
