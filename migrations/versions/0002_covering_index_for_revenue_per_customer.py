"""covering index for revenue per customer

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 16:36:55.393313
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import crmcli.models


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purchase_customer_at'))
        batch_op.create_index('ix_purchase_customer_revenue', ['customer_id', 'at', 'net_minor', 'refunded_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_customer_revenue')
        batch_op.create_index(batch_op.f('ix_purchase_customer_at'), ['customer_id', 'at'], unique=False)

