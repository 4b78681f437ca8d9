"""cards: cards, card_nonces, card_taps, card_keys (ehr.cards.tables)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cards',
    sa.Column('cid', sa.String(length=32), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('sub', sa.String(length=64), nullable=False),
    sa.Column('uid', sa.String(length=20), nullable=True),
    sa.Column('card_jwk', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('issued', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=True),
    sa.Column('revoked', sa.BigInteger(), nullable=True),
    sa.Column('revoke_reason', sa.String(length=40), nullable=True),
    sa.Column('replaced_by', sa.String(length=32), nullable=True),
    sa.Column('last_counter', sa.BigInteger(), nullable=True),
    sa.Column('last_tap', sa.BigInteger(), nullable=True),
    sa.CheckConstraint("kind IN ('iso-dep', 'sun')", name=op.f('ck_cards_kind')),
    sa.CheckConstraint("status IN ('active', 'revoked')", name=op.f('ck_cards_status')),
    sa.PrimaryKeyConstraint('cid', name=op.f('pk_cards')),
    sa.UniqueConstraint('uid', name=op.f('uq_cards_uid'))
    )
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.create_index('ix_cards_patient_id', ['patient_id'], unique=False)

    op.create_table('card_keys',
    sa.Column('kid', sa.String(length=64), nullable=False),
    sa.Column('use', sa.String(length=8), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('public_jwk', sa.Text(), nullable=True),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('retired', sa.BigInteger(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=True),
    sa.PrimaryKeyConstraint('kid', name=op.f('pk_card_keys')),
    sa.UniqueConstraint('use', 'active', name='uq_card_keys_use_active')
    )
    op.create_table('card_nonces',
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('nonce_hash', name=op.f('pk_card_nonces'))
    )
    with op.batch_alter_table('card_nonces', schema=None) as batch_op:
        batch_op.create_index('ix_card_nonces_client_id', ['client_id'], unique=False)
        batch_op.create_index('ix_card_nonces_expires', ['expires'], unique=False)

    op.create_table('card_taps',
    sa.Column('tap_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('cid', sa.String(length=32), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('expires', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('tap_hash', name=op.f('pk_card_taps'))
    )
    with op.batch_alter_table('card_taps', schema=None) as batch_op:
        batch_op.create_index('ix_card_taps_expires', ['expires'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('card_taps', schema=None) as batch_op:
        batch_op.drop_index('ix_card_taps_expires')
    op.drop_table('card_taps')
    with op.batch_alter_table('card_nonces', schema=None) as batch_op:
        batch_op.drop_index('ix_card_nonces_expires')
        batch_op.drop_index('ix_card_nonces_client_id')
    op.drop_table('card_nonces')
    op.drop_table('card_keys')
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_index('ix_cards_patient_id')
    op.drop_table('cards')
