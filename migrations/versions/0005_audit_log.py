"""the audit log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 00:40:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import crmcli.models


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'audit_entry',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', crmcli.models.UTCDateTime(), nullable=False),
        sa.Column('os_user', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('command', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('details', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entry')),
    )
    op.create_index(op.f('ix_audit_entry_at'), 'audit_entry', ['at'], unique=False)
    op.create_index(op.f('ix_audit_entry_command'), 'audit_entry', ['command'], unique=False)
    op.create_table(
        'audit_customer',
        sa.Column('audit_id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['audit_id'], ['audit_entry.id'], name=op.f('fk_audit_customer_audit_id_audit_entry')),
        sa.PrimaryKeyConstraint('audit_id', 'customer_id', name=op.f('pk_audit_customer')),
    )
    op.create_index('ix_audit_customer_customer_id', 'audit_customer', ['customer_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_customer_customer_id', table_name='audit_customer')
    op.drop_table('audit_customer')
    op.drop_index(op.f('ix_audit_entry_command'), table_name='audit_entry')
    op.drop_index(op.f('ix_audit_entry_at'), table_name='audit_entry')
    op.drop_table('audit_entry')
