"""free orders: a purchase of 0 is valid

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 23:45:00
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite cannot alter a CHECK constraint: batch mode copies the table with the new one.
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_purchase_gross_positive'), type_='check')
        batch_op.create_check_constraint(op.f('ck_purchase_gross_not_negative'), 'gross_minor >= 0')


def downgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_purchase_gross_not_negative'), type_='check')
        batch_op.create_check_constraint(op.f('ck_purchase_gross_positive'), 'gross_minor > 0')
