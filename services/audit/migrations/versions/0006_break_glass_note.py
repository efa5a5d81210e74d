"""break-glass: an entry keeps the sealed note of a break-glass access

The note is the practitioner's free text sealed by records with the patient's data key;
the trail keeps it opaque (records opens it for compliance staff).

Revision ID: 0006_break_glass_note
Revises: 0005_lease
Create Date: 2026-12-03 09:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0006_break_glass_note'
down_revision: Union[str, Sequence[str], None] = '0005_lease'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # A nullable column added at the end: no row is rewritten (the trail is append-only).
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('break_glass_note', sa.Text(), nullable=True))


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('entries', schema=None) as batch_op:
        batch_op.drop_column('break_glass_note')
