"""when each customer's points removals were last replayed

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 19:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import crmcli.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty at first: a customer's next settle of the points replays in full and records it.
    op.create_table(
        'points_settled',
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('at', crmcli.models.UTCDateTime(), nullable=False),
        sa.Column('rules', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('facts', sa.Integer(), nullable=False),
        sa.Column('total', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ['customer_id'], ['customer.id'], name=op.f('fk_points_settled_customer_id_customer'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_points_settled')),
    )


def downgrade() -> None:
    op.drop_table('points_settled')
