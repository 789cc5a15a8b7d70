"""Index core.fact_crm_call.call_id with a hash index instead of a B-tree.

call_id is a random UUID string, looked up and joined by equality only; a B-tree insert at
a random place cost about 3 us of the ~25 us PostgreSQL spends per loaded call, a hash
insert about 1.5 (bench/README.md). (models/crm.py declares it too.)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_fact_crm_call_call_id", table_name="fact_crm_call", schema="core")
    op.create_index(
        "ix_fact_crm_call_call_id", "fact_crm_call", ["call_id"], schema="core", postgresql_using="hash"
    )


def downgrade() -> None:
    op.drop_index("ix_fact_crm_call_call_id", table_name="fact_crm_call", schema="core")
    op.create_index("ix_fact_crm_call_call_id", "fact_crm_call", ["call_id"], schema="core")
