"""Soft deletes for every fact table: ``_gone_at``.

A pull never deletes what the vendor once returned. A record that a complete pull of its
window no longer returns keeps its row and gets ``_gone_at`` (cleared if it comes back), as
the snapshot dimensions already did; the dimensions' column comment now says the same for
both kinds of table. Partial indexes are not needed: analysts filter on the column in the
mart views, which read whole windows anyway.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COMMENT = (
    "When a complete pull of the row's window (a snapshot, for a dimension) first no longer returned "
    "it; NULL while the vendor returns it. The row is kept: analysts filter on it (mart: is_deleted)."
)
OLD_DIM_COMMENT = "When a snapshot first no longer listed this row; NULL while the vendor still lists it."
FACTS = (
    "fact_crm_call",
    "fact_crm_call_recording",
    "fact_crm_call_ivr",
    "fact_isales_api_call",
    "fact_push_log",
    "fact_trtc_call",
    "fact_trtc_call_callee",
)
DIMENSIONS = ("dim_crm_hangup_reason", "dim_isales_file_server")


def upgrade() -> None:
    # A nullable column without a default: PostgreSQL adds it without rewriting the table.
    for table in FACTS:
        op.add_column(
            table,
            sa.Column("_gone_at", sa.DateTime(timezone=True), nullable=True, comment=COMMENT),
            schema="core",
        )
    for table in DIMENSIONS:
        op.alter_column(
            table,
            "_gone_at",
            existing_type=sa.DateTime(timezone=True),
            comment=COMMENT,
            existing_comment=OLD_DIM_COMMENT,
            schema="core",
        )


def downgrade() -> None:
    for table in DIMENSIONS:
        op.alter_column(
            table,
            "_gone_at",
            existing_type=sa.DateTime(timezone=True),
            comment=OLD_DIM_COMMENT,
            existing_comment=COMMENT,
            schema="core",
        )
    for table in FACTS:
        op.drop_column(table, "_gone_at", schema="core")
