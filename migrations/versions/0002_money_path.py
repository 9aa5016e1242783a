"""money path: call ids, provisional rows, dead letters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 01:00:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    # Existing rows keep call_id NULL (they dedupe by request_id alone) and are not provisional.
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('call_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('provisional', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_check_constraint('cost_is_a_number', "cost <> 'NaN'")
        # Unique only where a call id ties reports with different request ids (models.CALL_ID_UNIQUE_WHERE).
        batch_op.create_index(
            'uq_usage_logs_call_id',
            ['call_id'],
            unique=True,
            postgresql_where=sa.text("call_id LIKE 'a1req-%' OR request_id LIKE '%cache_hit%'"),
            sqlite_where=sa.text("call_id LIKE 'a1req-%' OR request_id LIKE '%cache_hit%'"),
        )
        batch_op.create_index(
            'ix_usage_logs_provisional',
            ['occurred_at'],
            unique=False,
            postgresql_where=sa.text('provisional'),
            sqlite_where=sa.text('provisional'),
        )

    op.create_table('usage_dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('request_id', sa.String(length=255), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_usage_dead_letters'))
    )
    with op.batch_alter_table('usage_dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_dead_letters_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('usage_dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_dead_letters_created_at'))

    op.drop_table('usage_dead_letters')
    with op.batch_alter_table('usage_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_logs_provisional')
        batch_op.drop_index('uq_usage_logs_call_id')
        batch_op.drop_constraint(batch_op.f('ck_usage_logs_cost_is_a_number'), type_='check')
        batch_op.drop_column('provisional')
        batch_op.drop_column('call_id')
