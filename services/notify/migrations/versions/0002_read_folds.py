"""Read folds: reads by one reader for one purpose within a window are one notification.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 06:30:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('folded_reads',
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('notification_id', sa.String(length=36), nullable=False),
    sa.Column('patient', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('event_id')
    )
    with op.batch_alter_table('folded_reads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_folded_reads_patient'), ['patient'], unique=False)

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fold_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('folds_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_notifications_fold', ['fold_key', 'occurred_at'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_fold')
        batch_op.drop_column('folds_until')
        batch_op.drop_column('fold_key')

    with op.batch_alter_table('folded_reads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_folded_reads_patient'))

    op.drop_table('folded_reads')
