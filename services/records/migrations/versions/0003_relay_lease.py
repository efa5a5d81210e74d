"""The relay lease: one row per outbox naming the relay that may publish it, its fencing token
and the Kafka transactional id every relay of the outbox shares (shared/relay_lease.py).

Revision ID: 0003_lease
Revises: 0002
Create Date: 2026-12-02 08:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003_lease'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('relay_leases',
    sa.Column('outbox', sa.String(length=120), nullable=False),
    sa.Column('transactional_id', sa.String(length=200), nullable=False),
    sa.Column('token', sa.BigInteger(), nullable=False),
    sa.Column('holder', sa.String(length=200), nullable=False),
    sa.Column('expires_at', sa.Double(), nullable=False),
    sa.Column('last_batch', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('outbox')
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('relay_leases')
