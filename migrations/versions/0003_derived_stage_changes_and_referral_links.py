"""derived stage changes, referral reward links, the reversal ledger kind

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 23:55:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('stage_change', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cause', sa.String(), nullable=False, server_default='manual'))
    with op.batch_alter_table('coupon', schema=None) as batch_op:
        batch_op.add_column(sa.Column('referral_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_coupon_referral_id'), ['referral_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_coupon_referral_id_referral'), 'referral', ['referral_id'], ['id'])
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purchase_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_referral_purchase_id'), ['purchase_id'], unique=False)
    # Earned points taken back by a refund were 'refund' entries below zero; they are now
    # the 'reversal' the ledger rules derive ('refund' keeps the points given back).
    op.execute("UPDATE points_entry SET kind = 'reversal' WHERE kind = 'refund' AND delta < 0")


def downgrade() -> None:
    op.execute("UPDATE points_entry SET kind = 'refund' WHERE kind = 'reversal'")
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referral_purchase_id'))
        batch_op.drop_column('purchase_id')
    with op.batch_alter_table('coupon', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_coupon_referral_id_referral'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_coupon_referral_id'))
        batch_op.drop_column('referral_id')
    with op.batch_alter_table('stage_change', schema=None) as batch_op:
        batch_op.drop_column('cause')
