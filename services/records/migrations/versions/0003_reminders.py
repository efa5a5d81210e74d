"""Preventive-care reminders: each chart's reminders as last evaluated, the patient's snoozes
and dismissals, and when each chart was last evaluated (the daily sweep).

Revision ID: 0003_reminders
Revises: 0002
Create Date: 2026-12-02 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003_reminders'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('reminders',
    sa.Column('patient', sa.String(length=200), nullable=False),
    sa.Column('rule_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('rule_set_version', sa.String(length=100), nullable=True),
    sa.Column('announced_due', sa.Date(), nullable=True),
    sa.Column('snoozed_until', sa.Date(), nullable=True),
    sa.Column('dismissed_due', sa.Date(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('patient', 'rule_id')
    )
    op.create_table('reminder_charts',
    sa.Column('patient', sa.String(length=200), nullable=False),
    sa.Column('evaluated_on', sa.Date(), nullable=False),
    sa.Column('rule_set_version', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('patient')
    )
    op.create_index('ix_reminder_charts_evaluated_on', 'reminder_charts', ['evaluated_on'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_reminder_charts_evaluated_on', table_name='reminder_charts')
    op.drop_table('reminder_charts')
    op.drop_table('reminders')
