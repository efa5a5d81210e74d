"""The chart: keys, records, versions, code digests, consent projection, outbox, inbox.

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 05:35:30.710461

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('charts',
    sa.Column('patient', sa.String(length=200), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=True),
    sa.Column('wrapped_key', sa.LargeBinary(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('erased_by', sa.String(length=250), nullable=True),
    sa.PrimaryKeyConstraint('patient')
    )
    op.create_table('consents',
    sa.Column('consent_id', sa.String(length=64), nullable=False),
    sa.Column('patient', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('grantee_type', sa.String(length=20), nullable=False),
    sa.Column('grantee_id', sa.String(length=200), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('categories', sa.JSON(), nullable=False),
    sa.Column('security_labels', sa.JSON(), nullable=False),
    sa.Column('purposes', sa.JSON(), nullable=False),
    sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consent_id')
    )
    op.create_index('ix_consents_patient_grantee', 'consents', ['patient', 'grantee_id'], unique=False)

    op.create_table('inbox',
    sa.Column('consumer', sa.String(length=120), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('topic', sa.String(length=120), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('offset', sa.Integer(), nullable=False),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('consumer', 'event_id')
    )
    op.create_table('outbox',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=120), nullable=False),
    sa.Column('topic', sa.String(length=120), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('value', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('event_id')
    )
    op.create_index('ix_outbox_unsent', 'outbox', ['seq'], unique=False, sqlite_where=sa.text('sent_at IS NULL'), postgresql_where=sa.text('sent_at IS NULL'))

    op.create_table('records',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('patient', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=3), nullable=False),
    sa.Column('author', sa.String(length=250), nullable=False),
    sa.Column('author_org', sa.String(length=200), nullable=True),
    sa.Column('security', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id')
    )
    op.create_index('ix_records_patient_seq', 'records', ['patient', 'seq'], unique=False)

    op.create_table('record_codes',
    sa.Column('record_id', sa.String(length=36), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], ),
    sa.PrimaryKeyConstraint('record_id', 'digest')
    )
    op.create_index('ix_record_codes_digest', 'record_codes', ['digest'], unique=False)

    op.create_table('record_versions',
    sa.Column('record_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('security', sa.JSON(), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=False),
    sa.Column('nonce', sa.LargeBinary(), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed_by', sa.String(length=250), nullable=False),
    sa.ForeignKeyConstraint(['record_id'], ['records.id'], ),
    sa.PrimaryKeyConstraint('record_id', 'version')
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('record_versions')
    op.drop_index('ix_record_codes_digest', table_name='record_codes')

    op.drop_table('record_codes')
    op.drop_index('ix_records_patient_seq', table_name='records')

    op.drop_table('records')
    op.drop_index('ix_outbox_unsent', table_name='outbox', sqlite_where=sa.text('sent_at IS NULL'), postgresql_where=sa.text('sent_at IS NULL'))

    op.drop_table('outbox')
    op.drop_table('inbox')
    op.drop_index('ix_consents_patient_grantee', table_name='consents')

    op.drop_table('consents')
    op.drop_table('charts')
