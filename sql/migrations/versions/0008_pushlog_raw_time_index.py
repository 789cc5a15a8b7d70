"""Index raw push logs by partition and delivery time.

An incremental refresh prunes only inside the range it pulled; without this index that
prune reads every raw row of the month (seconds at a million rows), so a refresh cost
grew with the month instead of with what was new. (models/pushlog.py declares it too.)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The expression is PushLog's SourceSpec.raw_time_sql, verbatim, so the prune can use it.
    op.execute(
        "CREATE INDEX IF NOT EXISTS ix_pushlog_partition_create_time "
        "ON raw.pushlog (partition_key, (core.try_epoch_ms(record->'CreateTime')))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS raw.ix_pushlog_partition_create_time")
