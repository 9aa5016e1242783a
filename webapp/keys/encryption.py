"""Re-encrypting stored secrets (LiteLLM virtual keys, webhook signing secrets) under the newest
ENCRYPTION_KEY (`flask keys rotate-encryption`).

ENCRYPTION_KEY lists Fernet keys newest first: new secrets are encrypted with the first, any listed key
decrypts. To retire a key: put the new one first, run the rotation, then drop the old one from the list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from webapp.extensions import db
from webapp.models import ApiKey
from webapp.security import derived_encryption_key, keyring_keys

# Every (table, column) holding a secret made by webapp.security.encrypt_secret; a feature storing another
# one appends it here so rotation covers it. Each table needs an integer `id` primary key.
ENCRYPTED_COLUMNS: list[tuple[str, str]] = [
    (ApiKey.__tablename__, "litellm_key_encrypted"),
    ("webhook_endpoints", "secret_encrypted"),  # webhook signing secrets (webapp.webhooks.service)
]


@dataclass
class RotationReport:
    rotated: int = 0
    already_current: int = 0
    unreadable: list[tuple[str, int]] = field(default_factory=list)  # ("table.column", row id)

    @property
    def seen(self) -> int:
        return self.rotated + self.already_current + len(self.unreadable)


def _columns() -> list[tuple[sa.TableClause, sa.ColumnClause[str]]]:
    found = []
    for table_name, column_name in ENCRYPTED_COLUMNS:
        column = sa.column(column_name, sa.Text)
        found.append((sa.table(table_name, sa.column("id", sa.Integer), column), column))
    return found


def _stored(column: sa.ColumnClause[str]) -> sa.ColumnElement[bool]:
    return sa.and_(column.is_not(None), column != "")


def count_encrypted() -> int:
    return sum(
        db.session.scalar(sa.select(sa.func.count()).select_from(table).where(_stored(column))) or 0
        for table, column in _columns()
    )


def rotate_encryption(
    legacy_secret_keys: Sequence[str] = (),
    on_progress: Callable[[int], None] = lambda rows: None,
    batch_size: int = 500,
) -> RotationReport:
    """Re-encrypt every stored secret that the newest key cannot open yet; commits per batch.

    `legacy_secret_keys`: former SECRET_KEYs whose derived key (the scheme used before ENCRYPTION_KEY)
    may still have encrypted rows. Running it again re-encrypts nothing.
    """
    keys = keyring_keys()
    newest = Fernet(keys[0])
    readers = MultiFernet([Fernet(key) for key in [*keys, *map(derived_encryption_key, legacy_secret_keys)]])
    report = RotationReport()
    for table, column in _columns():
        _rotate_column(table, column, newest, readers, report, on_progress, batch_size)
    return report


def _rotate_column(
    table: sa.TableClause,
    column: sa.ColumnClause[str],
    newest: Fernet,
    readers: MultiFernet,
    report: RotationReport,
    on_progress: Callable[[int], None],
    batch_size: int,
) -> None:
    row_id = table.c.id
    last_id = 0
    where = f"{table.name}.{column.name}"
    while True:
        batch = db.session.execute(
            sa.select(row_id, column).where(_stored(column), row_id > last_id).order_by(row_id).limit(batch_size)
        ).all()
        if not batch:
            return
        for current_id, ciphertext in batch:
            _rotate_one(table, column, current_id, ciphertext, newest, readers, report, where)
        db.session.commit()
        last_id = batch[-1][0]
        on_progress(len(batch))


def _rotate_one(
    table: sa.TableClause,
    column: sa.ColumnClause[str],
    row_id: int,
    ciphertext: str,
    newest: Fernet,
    readers: MultiFernet,
    report: RotationReport,
    where: str,
) -> None:
    token = ciphertext.encode()
    try:
        newest.decrypt(token)
        report.already_current += 1
        return
    except InvalidToken:
        pass
    try:
        plaintext = readers.decrypt(token)
    except InvalidToken:
        report.unreadable.append((where, row_id))
        return
    # Compare-and-set: a secret rewritten meanwhile (a key rotation) is already under the newest key.
    db.session.execute(
        sa.update(table)
        .where(table.c.id == row_id, column == ciphertext)
        .values({column.name: newest.encrypt(plaintext).decode()})
    )
    report.rotated += 1
