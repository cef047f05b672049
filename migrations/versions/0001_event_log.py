"""The append-only event log.

Revision ID: 0001_event_log
Revises:
Create Date: 2026-11-24
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_event_log"
down_revision = None
branch_labels = None
depends_on = None

APPLICATION_ID = 0x44504F54  # 'DPOT'; frozen here, as migrations must not import live code


def upgrade() -> None:
    op.create_table(
        "event",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("ts", sa.String(), nullable=False),
        sa.Column("payload", sa.String(), nullable=False),
        sa.Column("prev_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
    )
    op.create_index("ix_event_type", "event", ["type"])
    # Append-only: rows can be inserted, never changed or removed.
    op.execute(
        "CREATE TRIGGER event_no_update BEFORE UPDATE ON event "
        "BEGIN SELECT RAISE(ABORT, 'dpo-tui event log is append-only: UPDATE refused'); END"
    )
    op.execute(
        "CREATE TRIGGER event_no_delete BEFORE DELETE ON event "
        "BEGIN SELECT RAISE(ABORT, 'dpo-tui event log is append-only: DELETE refused'); END"
    )
    op.execute(f"PRAGMA application_id = {APPLICATION_ID}")


def downgrade() -> None:
    raise RuntimeError("the event log is append-only; its table is never dropped")
