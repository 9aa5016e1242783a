"""proxy edge: plan parameter caps

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 01:00:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('plans') as batch_op:
        batch_op.add_column(sa.Column('max_n', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('plans') as batch_op:
        batch_op.drop_column('max_n')
