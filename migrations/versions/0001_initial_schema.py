"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 15:34:28.000787
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import crmcli.models


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('company', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('city', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('referral_code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', crmcli.models.UTCDateTime(), nullable=False),
    sa.Column('updated_at', crmcli.models.UTCDateTime(), nullable=False),
    sa.Column('erased_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint("stage IN ('lead','verified','prospect','customer','repeat','lost')", name=op.f('ck_customer_stage')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer')),
    sa.UniqueConstraint('email', name=op.f('uq_customer_email')),
    sa.UniqueConstraint('phone', name=op.f('uq_customer_phone')),
    sa.UniqueConstraint('ref', name=op.f('uq_customer_ref')),
    sa.UniqueConstraint('referral_code', name=op.f('uq_customer_referral_code'))
    )
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_stage'), ['stage'], unique=False)

    op.create_table('coupon',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('percent_bp', sa.Integer(), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=True),
    sa.Column('min_spend_minor', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('max_uses', sa.Integer(), nullable=False),
    sa.Column('uses', sa.Integer(), nullable=False),
    sa.Column('campaign', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('voided_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', crmcli.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('(percent_bp IS NULL) <> (amount_minor IS NULL)', name=op.f('ck_coupon_one_kind')),
    sa.CheckConstraint('uses >= 0 AND uses <= max_uses', name=op.f('ck_coupon_uses')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_coupon_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon')),
    sa.UniqueConstraint('code', name=op.f('uq_coupon_code'))
    )
    with op.batch_alter_table('coupon', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coupon_campaign'), ['campaign'], unique=False)
        batch_op.create_index(batch_op.f('ix_coupon_customer_id'), ['customer_id'], unique=False)

    op.create_table('customer_tag',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('tag', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_customer_tag_customer_id_customer')),
    sa.PrimaryKeyConstraint('customer_id', 'tag', name=op.f('pk_customer_tag'))
    )
    with op.batch_alter_table('customer_tag', schema=None) as batch_op:
        batch_op.create_index('ix_customer_tag_tag', ['tag'], unique=False)

    op.create_table('interaction',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('summary', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('at', crmcli.models.UTCDateTime(), nullable=False),
    sa.Column('follow_up_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('follow_up_done_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('responded_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('resolved_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', crmcli.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('rating IS NULL OR rating BETWEEN 1 AND 5', name=op.f('ck_interaction_rating')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_interaction_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_interaction'))
    )
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.create_index('ix_interaction_customer_at', ['customer_id', 'at'], unique=False)
        batch_op.create_index('ix_interaction_follow_up_at', ['follow_up_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_kind'), ['kind'], unique=False)

    op.create_table('referral',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('referrer_id', sa.Integer(), nullable=False),
    sa.Column('referred_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', crmcli.models.UTCDateTime(), nullable=False),
    sa.Column('decided_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.CheckConstraint("status IN ('pending','verified','rejected')", name=op.f('ck_referral_status')),
    sa.CheckConstraint('referrer_id <> referred_id', name=op.f('ck_referral_not_self')),
    sa.ForeignKeyConstraint(['referred_id'], ['customer.id'], name=op.f('fk_referral_referred_id_customer')),
    sa.ForeignKeyConstraint(['referrer_id'], ['customer.id'], name=op.f('fk_referral_referrer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral')),
    sa.UniqueConstraint('referred_id', name=op.f('uq_referral_referred_id'))
    )
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referral_referrer_id'), ['referrer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_referral_status'), ['status'], unique=False)

    op.create_table('stage_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('from_stage', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('to_stage', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', crmcli.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_stage_change_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stage_change'))
    )
    with op.batch_alter_table('stage_change', schema=None) as batch_op:
        batch_op.create_index('ix_stage_change_customer_at', ['customer_id', 'at'], unique=False)

    op.create_table('purchase',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('gross_minor', sa.BigInteger(), nullable=False),
    sa.Column('coupon_discount_minor', sa.BigInteger(), nullable=False),
    sa.Column('points_used', sa.Integer(), nullable=False),
    sa.Column('points_discount_minor', sa.BigInteger(), nullable=False),
    sa.Column('net_minor', sa.BigInteger(), nullable=False),
    sa.Column('coupon_id', sa.Integer(), nullable=True),
    sa.Column('at', crmcli.models.UTCDateTime(), nullable=False),
    sa.Column('due_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('paid_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('refunded_at', crmcli.models.UTCDateTime(), nullable=True),
    sa.Column('created_at', crmcli.models.UTCDateTime(), nullable=False),
    sa.CheckConstraint('gross_minor > 0', name=op.f('ck_purchase_gross_positive')),
    sa.CheckConstraint('net_minor >= 0', name=op.f('ck_purchase_net_not_negative')),
    sa.ForeignKeyConstraint(['coupon_id'], ['coupon.id'], name=op.f('fk_purchase_coupon_id_coupon')),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_purchase_customer_id_customer')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_purchase')),
    sa.UniqueConstraint('ref', name=op.f('uq_purchase_ref'))
    )
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.create_index('ix_purchase_at', ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_purchase_coupon_id'), ['coupon_id'], unique=False)
        batch_op.create_index('ix_purchase_customer_at', ['customer_id', 'at'], unique=False)

    op.create_table('points_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('delta', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('purchase_id', sa.Integer(), nullable=True),
    sa.Column('period', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('at', crmcli.models.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], name=op.f('fk_points_entry_customer_id_customer')),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchase.id'], name=op.f('fk_points_entry_purchase_id_purchase')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_points_entry')),
    sa.UniqueConstraint('customer_id', 'kind', 'period', name=op.f('uq_points_entry_customer_id_kind_period'))
    )
    with op.batch_alter_table('points_entry', schema=None) as batch_op:
        batch_op.create_index('ix_points_entry_customer_id', ['customer_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_points_entry_purchase_id'), ['purchase_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('points_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_points_entry_purchase_id'))
        batch_op.drop_index('ix_points_entry_customer_id')

    op.drop_table('points_entry')
    with op.batch_alter_table('purchase', schema=None) as batch_op:
        batch_op.drop_index('ix_purchase_customer_at')
        batch_op.drop_index(batch_op.f('ix_purchase_coupon_id'))
        batch_op.drop_index('ix_purchase_at')

    op.drop_table('purchase')
    with op.batch_alter_table('stage_change', schema=None) as batch_op:
        batch_op.drop_index('ix_stage_change_customer_at')

    op.drop_table('stage_change')
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referral_status'))
        batch_op.drop_index(batch_op.f('ix_referral_referrer_id'))

    op.drop_table('referral')
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interaction_kind'))
        batch_op.drop_index('ix_interaction_follow_up_at')
        batch_op.drop_index('ix_interaction_customer_at')

    op.drop_table('interaction')
    with op.batch_alter_table('customer_tag', schema=None) as batch_op:
        batch_op.drop_index('ix_customer_tag_tag')

    op.drop_table('customer_tag')
    with op.batch_alter_table('coupon', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coupon_customer_id'))
        batch_op.drop_index(batch_op.f('ix_coupon_campaign'))

    op.drop_table('coupon')
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_stage'))

    op.drop_table('customer')
