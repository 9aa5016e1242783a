"""billing: credit ledger, invoices, fx rates

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 01:00:00

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

MONEY = sa.Numeric(precision=20, scale=10)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

# The ledger is append-only and a finalized invoice never changes: the database refuses it too, not only the code.
PG_GUARDS = """
CREATE FUNCTION credit_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'credit_ledger_entries is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER credit_ledger_entries_append_only BEFORE UPDATE OR DELETE ON credit_ledger_entries
  FOR EACH ROW EXECUTE FUNCTION credit_ledger_append_only();
CREATE FUNCTION finalized_invoice_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.status = 'finalized' THEN
    RAISE EXCEPTION 'invoice % is finalized: % refused', OLD.id, TG_OP;
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER invoices_finalized_immutable BEFORE UPDATE OR DELETE ON invoices
  FOR EACH ROW EXECUTE FUNCTION finalized_invoice_immutable();
CREATE FUNCTION finalized_invoice_lines_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  parent_status text;
BEGIN
  SELECT status INTO parent_status FROM invoices
    WHERE id = CASE WHEN TG_OP = 'INSERT' THEN NEW.invoice_id ELSE OLD.invoice_id END;
  IF parent_status = 'finalized' THEN
    RAISE EXCEPTION 'lines of a finalized invoice are immutable: % refused', TG_OP;
  END IF;
  RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END $$;
CREATE TRIGGER invoice_lines_finalized_immutable BEFORE INSERT OR UPDATE OR DELETE ON invoice_lines
  FOR EACH ROW EXECUTE FUNCTION finalized_invoice_lines_immutable();
"""
PG_DROP_GUARDS = """
DROP TRIGGER IF EXISTS invoice_lines_finalized_immutable ON invoice_lines;
DROP FUNCTION IF EXISTS finalized_invoice_lines_immutable();
DROP TRIGGER IF EXISTS invoices_finalized_immutable ON invoices;
DROP FUNCTION IF EXISTS finalized_invoice_immutable();
DROP TRIGGER IF EXISTS credit_ledger_entries_append_only ON credit_ledger_entries;
DROP FUNCTION IF EXISTS credit_ledger_append_only();
"""
SQLITE_GUARDS = (
    "CREATE TRIGGER credit_ledger_entries_no_update BEFORE UPDATE ON credit_ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'credit_ledger_entries is append-only: UPDATE refused'); END",
    "CREATE TRIGGER credit_ledger_entries_no_delete BEFORE DELETE ON credit_ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'credit_ledger_entries is append-only: DELETE refused'); END",
    "CREATE TRIGGER invoices_finalized_no_update BEFORE UPDATE ON invoices WHEN OLD.status = 'finalized' "
    "BEGIN SELECT RAISE(ABORT, 'invoice is finalized: UPDATE refused'); END",
    "CREATE TRIGGER invoices_finalized_no_delete BEFORE DELETE ON invoices WHEN OLD.status = 'finalized' "
    "BEGIN SELECT RAISE(ABORT, 'invoice is finalized: DELETE refused'); END",
)
SQLITE_GUARD_NAMES = (
    "credit_ledger_entries_no_update",
    "credit_ledger_entries_no_delete",
    "invoices_finalized_no_update",
    "invoices_finalized_no_delete",
)


def upgrade():
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('billing_currency', sa.String(length=3), server_default='USD', nullable=False))
        batch_op.add_column(
            sa.Column('tax_rate_percent', sa.Numeric(precision=5, scale=2), server_default='0', nullable=False)
        )
        batch_op.add_column(sa.Column('tax_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('billing_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('billing_address', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('low_balance_threshold', MONEY, nullable=True))

    op.create_table('credit_ledger_entries',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('topup', 'usage', 'adjustment', 'refund', name='ledgerentrykind', native_enum=False, length=16), nullable=False),
    sa.Column('amount', MONEY, nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('reference', sa.String(length=255), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind != 'usage' OR (period_start IS NOT NULL AND period_end IS NOT NULL AND period_start < period_end)", name=op.f('ck_credit_ledger_entries_usage_has_period')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_credit_ledger_entries_created_by_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_credit_ledger_entries_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_ledger_entries')),
    sa.UniqueConstraint('tenant_id', 'period_start', 'period_end', name='uq_credit_ledger_entries_usage_period')
    )
    with op.batch_alter_table('credit_ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_credit_ledger_entries_tenant_created', ['tenant_id', 'created_at'], unique=False)

    op.create_table('fx_rates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base', sa.String(length=3), nullable=False),
    sa.Column('quote', sa.String(length=3), nullable=False),
    sa.Column('rate', sa.Numeric(precision=20, scale=10), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint('rate > 0', name=op.f('ck_fx_rates_rate_positive')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_fx_rates_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fx_rates')),
    sa.UniqueConstraint('base', 'quote', 'effective_from', name='uq_fx_rates_pair_effective')
    )

    op.create_table('invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('kind', sa.Enum('invoice', 'credit_note', name='invoicekind', native_enum=False, length=16), nullable=False),
    sa.Column('status', sa.Enum('draft', 'finalized', name='invoicestatus', native_enum=False, length=16), nullable=False),
    sa.Column('number', sa.String(length=40), nullable=True),
    sa.Column('credits_invoice_id', sa.Integer(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('source_currency', sa.String(length=3), nullable=False),
    sa.Column('fx_rate', sa.Numeric(precision=20, scale=10), nullable=False),
    sa.Column('subtotal', MONEY, nullable=False),
    sa.Column('tax', MONEY, nullable=False),
    sa.Column('total', MONEY, nullable=False),
    sa.Column('credits_applied', MONEY, nullable=False),
    sa.Column('tax_rate', sa.Numeric(precision=5, scale=2), nullable=False),
    sa.Column('tax_id', sa.String(length=64), nullable=True),
    sa.Column('billing_name', sa.String(length=200), nullable=False),
    sa.Column('billing_address', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finalized_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finalized_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status = 'draft' OR number IS NOT NULL", name=op.f('ck_invoices_finalized_has_number')),
    sa.ForeignKeyConstraint(['credits_invoice_id'], ['invoices.id'], name=op.f('fk_invoices_credits_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['finalized_by_id'], ['users.id'], name=op.f('fk_invoices_finalized_by_id_users')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_invoices_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('number', name=op.f('uq_invoices_number'))
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index('ix_invoices_month_status', ['month', 'status'], unique=False)
        batch_op.create_index('ix_invoices_tenant_month', ['tenant_id', 'month'], unique=False)
        batch_op.create_index(
            'uq_invoices_tenant_month_invoice', ['tenant_id', 'month'], unique=True,
            postgresql_where=sa.text("kind = 'invoice'"), sqlite_where=sa.text("kind = 'invoice'"),
        )

    op.create_table('invoice_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('usage', 'fee', 'adjustment', name='invoicelinekind', native_enum=False, length=16), nullable=False),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('model', sa.String(length=255), nullable=False),
    sa.Column('requests', sa.BigInteger(), nullable=False),
    sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
    sa.Column('completion_tokens', sa.BigInteger(), nullable=False),
    sa.Column('source_amount', MONEY, nullable=False),
    sa.Column('amount', MONEY, nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invoice_lines_invoice_id_invoices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoice_lines'))
    )
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoice_lines_invoice_id'), ['invoice_id'], unique=False)

    op.create_table('invoice_number_sequences',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('year', name=op.f('pk_invoice_number_sequences'))
    )

    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_GUARDS)
    elif op.get_bind().dialect.name == 'sqlite':
        for statement in SQLITE_GUARDS:
            op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_DROP_GUARDS)
    elif op.get_bind().dialect.name == 'sqlite':
        for name in SQLITE_GUARD_NAMES:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table('invoice_number_sequences')
    with op.batch_alter_table('invoice_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_invoice_lines_invoice_id'))
    op.drop_table('invoice_lines')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('uq_invoices_tenant_month_invoice')
        batch_op.drop_index('ix_invoices_tenant_month')
        batch_op.drop_index('ix_invoices_month_status')
    op.drop_table('invoices')
    op.drop_table('fx_rates')
    with op.batch_alter_table('credit_ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_credit_ledger_entries_tenant_created')
    op.drop_table('credit_ledger_entries')
    with op.batch_alter_table('tenants', schema=None) as batch_op:
        batch_op.drop_column('low_balance_threshold')
        batch_op.drop_column('billing_address')
        batch_op.drop_column('billing_name')
        batch_op.drop_column('tax_id')
        batch_op.drop_column('tax_rate_percent')
        batch_op.drop_column('billing_currency')
