"""fact signatures: each entry keeps its fact's signature and the digest of its data

Revision ID: 0004_fact_signatures
Revises: 0003_console_verifications
Create Date: 2026-12-02

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004_fact_signatures'
down_revision: Union[str, Sequence[str], None] = '0003_console_verifications'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signature', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('data_digest', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_column('data_digest')
        batch_op.drop_column('signature')
