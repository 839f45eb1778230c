"""index of the sales on credit or refunded

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 02:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

CREDIT_OR_REFUND = "due_at IS NOT NULL OR refunded_at IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.create_index(
            'ix_purchase_credit_or_refund',
            ['customer_id', 'due_at', 'paid_at', 'refunded_at', 'net_minor'],
            unique=False,
            sqlite_where=sa.text(CREDIT_OR_REFUND),
            postgresql_where=sa.text(CREDIT_OR_REFUND),
        )


def downgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_credit_or_refund')
