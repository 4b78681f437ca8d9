"""empi: the EMPI blocking table empi_blocking (ehr.empi.tables)

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('empi_blocking',
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key', 'patient_id', name='pk_empi_blocking')
    )
    with op.batch_alter_table('empi_blocking', schema=None) as batch_op:
        batch_op.create_index('ix_empi_blocking_patient_id', ['patient_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('empi_blocking', schema=None) as batch_op:
        batch_op.drop_index('ix_empi_blocking_patient_id')

    op.drop_table('empi_blocking')
