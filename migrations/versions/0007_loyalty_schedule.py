"""birthdays, campaign budgets, daily rewards, referral signals and review

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-25 02:10:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import crmcli.models


revision = '0007'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'campaign',
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('budget_uses', sa.Integer(), nullable=True),
        sa.Column('budget_minor', sa.BigInteger(), nullable=True),
        sa.Column('uses', sa.Integer(), nullable=False),
        sa.Column('spent_minor', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('budget_minor IS NULL OR spent_minor <= budget_minor', name=op.f('ck_campaign_spent_within_budget')),
        sa.CheckConstraint('budget_uses IS NULL OR uses <= budget_uses', name=op.f('ck_campaign_uses_within_budget')),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_campaign')),
    )
    # The campaigns that already have coupons start with what they have used and given.
    op.execute(
        "INSERT INTO campaign (name, uses, spent_minor) "
        "SELECT c.campaign, COALESCE(SUM(c.uses), 0), COALESCE(SUM(("
        "SELECT SUM(p.coupon_discount_minor) FROM purchase p WHERE p.coupon_id = c.id)), 0) "
        "FROM coupon c WHERE c.campaign IS NOT NULL GROUP BY c.campaign"
    )
    op.create_table(
        'auto_reward',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('coupon_id', sa.Integer(), nullable=True),
        sa.Column('points', sa.Integer(), nullable=True),
        sa.Column('at', crmcli.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['coupon_id'], ['coupon.id'], name=op.f('fk_auto_reward_coupon_id_coupon')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_reward')),
        sa.UniqueConstraint('rule', 'customer_id', 'key', name=op.f('uq_auto_reward_rule_customer_id_key')),
    )
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.add_column(sa.Column('birthday', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signals', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('rewarded_at', crmcli.models.UTCDateTime(), nullable=True))
        batch_op.drop_constraint(op.f('ck_referral_status'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_referral_status'), "status IN ('pending','verified','rejected','review')"
        )
    # Referrals verified before were rewarded then.
    op.execute("UPDATE referral SET rewarded_at = decided_at WHERE status = 'verified'")


def downgrade() -> None:
    op.execute("UPDATE referral SET status = 'pending' WHERE status = 'review'")
    with op.batch_alter_table('referral', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_referral_status'), type_='check')
        batch_op.create_check_constraint(op.f('ck_referral_status'), "status IN ('pending','verified','rejected')")
        batch_op.drop_column('rewarded_at')
        batch_op.drop_column('signals')
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_column('birthday')
    op.drop_table('auto_reward')
    op.drop_table('campaign')
