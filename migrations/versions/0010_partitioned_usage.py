"""partitioned usage: on PostgreSQL usage_logs becomes monthly range partitions on occurred_at, plus a
DEFAULT partition; request_id / call_id uniqueness moves to usage_log_ids. SQLite keeps the plain table.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 04:00:00

A partitioned table's unique indexes must contain the partition key, so `UNIQUE (request_id)` and the partial
unique index on call_id cannot stay on usage_logs. They move, with the same definitions, to `usage_log_ids`
(one narrow row per usage row, written in the same statement: webapp.usage.recording). The primary key
becomes (id, occurred_at); id still comes from the one sequence.

Both directions copy the rows (INSERT .. SELECT, indexes built after the copy) under an exclusive lock:
stop the writers (proxy, sync, callback) while it runs. See docs/benchmarks.md for its speed.
"""
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

CALL_ID_UNIQUE_WHERE = "call_id LIKE 'a1req-%' OR request_id LIKE '%cache_hit%'"
MONTHS_AHEAD = 3
# Indexes of usage_logs apart from the keys: the same on both shapes.
PLAIN_INDEXES = (
    ('ix_usage_logs_tenant_time', '(tenant_id, occurred_at)'),
    ('ix_usage_logs_key_time', '(api_key_id, occurred_at)'),
    ('ix_usage_logs_litellm_key', '(litellm_key_id)'),
    ('ix_usage_logs_occurred_at', '(occurred_at)'),
    ('ix_usage_logs_provisional', '(occurred_at) WHERE provisional'),
)
FOREIGN_KEYS = (
    ('fk_usage_logs_api_key_id_api_keys', 'api_key_id', 'api_keys'),
    ('fk_usage_logs_tenant_id_tenants', 'tenant_id', 'tenants'),
)


def _months(first: date, last: date) -> list[date]:
    months, month = [], first
    while month <= last:
        months.append(month)
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return months


def _partition_ddl(month: date) -> str:
    following = _months(month, date(month.year + 1, month.month, 1))[1]
    return (
        f"CREATE TABLE usage_logs_p{month.year:04d}_{month.month:02d} PARTITION OF usage_logs "
        f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{following.isoformat()} 00:00:00+00')"
    )


def _rename_keys_and_indexes(table: str, suffix: str, keys: tuple[str, ...]) -> None:
    for name in keys:
        op.execute(f'ALTER TABLE {table} RENAME CONSTRAINT {name} TO {name}{suffix}')
    for name, _ in PLAIN_INDEXES:
        op.execute(f'ALTER INDEX {name} RENAME TO {name}{suffix}')


def _add_indexes_and_foreign_keys() -> None:
    op.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for name, columns in PLAIN_INDEXES:
        where = ''
        if ' WHERE ' in columns:
            columns, where = columns.split(' WHERE ')
            where = f' WHERE {where}'
        op.execute(f'CREATE INDEX {name} ON usage_logs {columns}{where}')
    op.execute("ALTER TABLE usage_logs ADD CONSTRAINT ck_usage_logs_cost_is_a_number CHECK (cost <> 'NaN')")
    for name, column, target in FOREIGN_KEYS:
        op.execute(f'ALTER TABLE usage_logs ADD CONSTRAINT {name} FOREIGN KEY ({column}) REFERENCES {target} (id)')


def _months_to_create(connection: sa.engine.Connection) -> list[date]:
    """Every month that has rows, and this month to MONTHS_AHEAD ahead (the rest would land in DEFAULT)."""
    today = datetime.now(UTC).date().replace(day=1)
    ahead = _months(today, date(today.year + 1, today.month, 1))[: MONTHS_AHEAD + 1]
    with_rows = connection.scalars(
        sa.text("SELECT DISTINCT date_trunc('month', occurred_at, 'UTC') FROM usage_logs_unpartitioned")
    )
    return sorted(set(ahead) | {moment.astimezone(UTC).date() for moment in with_rows})


def upgrade():
    op.create_table('usage_log_ids',
    sa.Column('request_id', sa.String(length=255), nullable=False),
    sa.Column('call_id', sa.String(length=255), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_usage_log_ids'))
    )
    op.create_index(
        'uq_usage_log_ids_call_id', 'usage_log_ids', ['call_id'], unique=True,
        postgresql_where=sa.text(CALL_ID_UNIQUE_WHERE), sqlite_where=sa.text(CALL_ID_UNIQUE_WHERE),
    )
    connection = op.get_bind()
    if connection.dialect.name != 'postgresql':
        return  # the embedded SQLite keeps its plain table (and its own unique keys); usage_log_ids stays empty
    op.execute('LOCK TABLE usage_logs IN ACCESS EXCLUSIVE MODE')
    op.execute('ALTER TABLE usage_logs RENAME TO usage_logs_unpartitioned')
    _rename_keys_and_indexes(
        'usage_logs_unpartitioned', '_unpartitioned', ('pk_usage_logs', 'uq_usage_logs_request_id')
    )
    op.execute('ALTER INDEX uq_usage_logs_call_id RENAME TO uq_usage_logs_call_id_unpartitioned')
    op.execute(
        'CREATE TABLE usage_logs (LIKE usage_logs_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at)'
    )
    op.execute('ALTER SEQUENCE usage_logs_id_seq OWNED BY usage_logs.id')
    for month in _months_to_create(connection):
        op.execute(_partition_ddl(month))
    op.execute('CREATE TABLE usage_logs_default PARTITION OF usage_logs DEFAULT')
    op.execute('INSERT INTO usage_logs SELECT * FROM usage_logs_unpartitioned')
    op.execute(
        'INSERT INTO usage_log_ids (request_id, call_id, occurred_at) '
        'SELECT request_id, call_id, occurred_at FROM usage_logs_unpartitioned'
    )
    op.execute('DROP TABLE usage_logs_unpartitioned')
    op.execute('ALTER TABLE usage_logs ADD CONSTRAINT pk_usage_logs PRIMARY KEY (id, occurred_at)')
    _add_indexes_and_foreign_keys()
    op.execute('ANALYZE usage_logs')


def downgrade():
    connection = op.get_bind()
    if connection.dialect.name == 'postgresql':
        op.execute('LOCK TABLE usage_logs IN ACCESS EXCLUSIVE MODE')
        op.execute('ALTER TABLE usage_logs RENAME TO usage_logs_partitioned')
        _rename_keys_and_indexes('usage_logs_partitioned', '_partitioned', ('pk_usage_logs',))
        op.execute('CREATE TABLE usage_logs (LIKE usage_logs_partitioned INCLUDING DEFAULTS)')
        op.execute('ALTER SEQUENCE usage_logs_id_seq OWNED BY usage_logs.id')
        op.execute('INSERT INTO usage_logs SELECT * FROM usage_logs_partitioned')
        op.execute('DROP TABLE usage_logs_partitioned')  # its partitions too
        op.execute('ALTER TABLE usage_logs ADD CONSTRAINT pk_usage_logs PRIMARY KEY (id)')
        op.execute('ALTER TABLE usage_logs ADD CONSTRAINT uq_usage_logs_request_id UNIQUE (request_id)')
        op.execute(f'CREATE UNIQUE INDEX uq_usage_logs_call_id ON usage_logs (call_id) WHERE {CALL_ID_UNIQUE_WHERE}')
        _add_indexes_and_foreign_keys()
        op.execute('ANALYZE usage_logs')
    op.drop_index('uq_usage_log_ids_call_id', table_name='usage_log_ids')
    op.drop_table('usage_log_ids')
