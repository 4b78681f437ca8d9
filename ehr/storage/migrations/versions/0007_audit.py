"""security: audit_chain, audit_state, consent_rules (ehr.security.tables)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_chain',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('recorded', sa.BigInteger(), nullable=False),
    sa.Column('record', sa.LargeBinary(), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_chain')),
    sa.UniqueConstraint('event_id', name=op.f('uq_audit_chain_event_id'))
    )
    op.create_table('audit_state',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_audit_state'))
    )
    op.create_table('consent_rules',
    sa.Column('consent_id', sa.String(length=64), nullable=False),
    sa.Column('n', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=True),
    sa.Column('rtype', sa.String(length=64), nullable=True),
    sa.Column('system', sa.String(length=512), nullable=True),
    sa.Column('code', sa.String(length=512), nullable=True),
    sa.Column('not_before', sa.BigInteger(), nullable=True),
    sa.Column('not_after', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('consent_id', 'n', name=op.f('pk_consent_rules'))
    )
    with op.batch_alter_table('consent_rules', schema=None) as batch_op:
        batch_op.create_index('ix_consent_rules_actor', ['actor'], unique=False)
        batch_op.create_index('ix_consent_rules_patient_id', ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('consent_rules', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_rules_patient_id')
        batch_op.drop_index('ix_consent_rules_actor')
    op.drop_table('consent_rules')
    op.drop_table('audit_state')
    op.drop_table('audit_chain')
