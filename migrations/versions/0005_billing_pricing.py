"""billing: price book versions and price columns

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 01:00:00

"""
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=20, scale=10)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def upgrade():
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), server_default='USD', nullable=False))
        batch_op.add_column(sa.Column('billing_mode', sa.Enum('postpaid', 'prepaid', name='billingmode', native_enum=False, length=16), server_default='postpaid', nullable=False))
        batch_op.add_column(sa.Column('monthly_fee', MONEY, nullable=True))

    op.create_table('price_book_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('markup_percent', sa.Numeric(precision=7, scale=2), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_price_book_versions_created_by_id_users')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_price_book_versions_plan_id_plans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_book_versions')),
    sa.UniqueConstraint('plan_id', 'effective_from', name='uq_price_book_versions_plan_from')
    )
    op.create_table('model_prices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=255), nullable=False),
    sa.Column('input_per_million', MONEY, nullable=False),
    sa.Column('output_per_million', MONEY, nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['price_book_versions.id'], name=op.f('fk_model_prices_version_id_price_book_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_prices')),
    sa.UniqueConstraint('version_id', 'model', name='uq_model_prices_version_model')
    )

    # A constant default: PostgreSQL adds these columns without rewriting the (large) tables.
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('price', MONEY, server_default='0', nullable=False))
        batch_op.add_column(sa.Column('price_version_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('usage_rollups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('price', MONEY, server_default='0', nullable=False))

    # Every existing plan gets its first version: its markup, from the epoch on.
    plans = sa.table('plans', sa.column('id', sa.Integer()), sa.column('markup_percent', sa.Numeric(7, 2)))
    versions = sa.table(
        'price_book_versions',
        sa.column('plan_id', sa.Integer()),
        sa.column('effective_from', sa.DateTime(timezone=True)),
        sa.column('markup_percent', sa.Numeric(7, 2)),
        sa.column('created_at', sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    sqlite = connection.dialect.name == 'sqlite'
    epoch = EPOCH.replace(tzinfo=None) if sqlite else EPOCH
    now = datetime.now(timezone.utc)
    rows = [
        {'plan_id': plan_id, 'effective_from': epoch, 'markup_percent': markup,
         'created_at': now.replace(tzinfo=None) if sqlite else now}
        for plan_id, markup in connection.execute(sa.select(plans.c.id, plans.c.markup_percent))
    ]
    if rows:
        op.bulk_insert(versions, rows)


def downgrade():
    with op.batch_alter_table('usage_rollups', schema=None) as batch_op:
        batch_op.drop_column('price')
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.drop_column('price_version_id')
        batch_op.drop_column('price')
    op.drop_table('model_prices')
    op.drop_table('price_book_versions')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('monthly_fee')
        batch_op.drop_column('billing_mode')
        batch_op.drop_column('currency')
