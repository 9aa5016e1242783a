"""`flask litellm import-keys`, `reconcile-keys`, `retire-keys`; `flask keys rotate-encryption`."""

from __future__ import annotations

import click

from webapp.cli import keys_cli, litellm_cli
from webapp.errors import ApiError
from webapp.extensions import db
from webapp.litellm.errors import LiteLLMError


@litellm_cli.command("import-keys")
def import_keys_command() -> None:
    """Import every LiteLLM virtual key and map those whose metadata names a tenant."""
    from webapp.keys.mapping import import_keys

    try:
        report = import_keys()
        db.session.commit()
    except (LiteLLMError, ApiError) as exc:
        db.session.rollback()
        raise click.ClickException(f"import stopped, nothing saved: {exc}") from exc
    click.echo(f"Seen {report.seen} LiteLLM keys: {report.added} new, {report.updated} updated, "
               f"{len(report.auto_mapped)} mapped to tenants, {len(report.unmapped)} left for staff.")
    for token, reason in report.conflicts.items():
        click.echo(f"  not mapped {token[:12]}…: {reason}")
    if report.platform_orphans:
        click.echo(f"  {len(report.platform_orphans)} keys carry our metadata but are unknown here: "
                   "run `flask litellm reconcile-keys`.")


@litellm_cli.command("reconcile-keys")
@click.option("--fix", is_flag=True, help="Repair what is safe to repair (see the report).")
def reconcile_keys_command(fix: bool) -> None:
    """Report drift between our keys and LiteLLM's virtual keys."""
    from webapp.keys.reconcile import reconcile_keys

    try:
        report = reconcile_keys(fix=fix)
    except LiteLLMError as exc:
        db.session.rollback()
        raise click.ClickException(f"LiteLLM could not be read: {exc}") from exc
    click.echo(f"Checked {report.local_checked} of our keys against {report.remote_seen} LiteLLM keys: "
               f"{len(report.drifts)} drift, {report.fixed} fixed.")
    for drift in report.drifts:
        owner = f"key {drift.api_key_id}" if drift.api_key_id else "no local key"
        state = "fixed" if drift.fixed else ("not fixed" if fix else "report only")
        click.echo(f"  {drift.kind:<12} {drift.token[:12]}… {owner}: {drift.detail} [{state}]")


@litellm_cli.command("retire-keys")
def retire_keys_command() -> None:
    """Block the LiteLLM keys of revoked (rotation grace over) and expired keys."""
    from webapp.keys.reconcile import retire_keys

    click.echo(f"Blocked {retire_keys()} LiteLLM keys.")


@keys_cli.command("rotate-encryption")
@click.option(
    "--legacy-secret-key",
    "legacy_secret_keys",
    multiple=True,
    envvar="LEGACY_SECRET_KEY",
    help="A former SECRET_KEY whose derived key encrypted rows before ENCRYPTION_KEY was set (repeatable; "
    "or the LEGACY_SECRET_KEY variable, space-separated).",
)
def rotate_encryption_command(legacy_secret_keys: tuple[str, ...]) -> None:
    """Re-encrypt every stored LiteLLM key and webhook secret under the first ENCRYPTION_KEY (safe to rerun)."""
    from webapp.keys.encryption import count_encrypted, rotate_encryption

    with click.progressbar(length=count_encrypted(), label="Re-encrypting stored secrets") as bar:
        report = rotate_encryption(legacy_secret_keys, on_progress=bar.update)
    click.echo(f"Checked {report.seen} stored secrets: {report.rotated} re-encrypted, "
               f"{report.already_current} already under the newest key, {len(report.unreadable)} unreadable.")
    for where, row_id in report.unreadable:
        click.echo(f"  cannot decrypt {where} of id {row_id} with any listed key: left as it is", err=True)
