"""Join the per-source branches; add core.try_smallint for coded columns.

Revision ID: 0006
Revises: 0003, 0004, 0005
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: tuple[str, ...] = ("0003", "0004", "0005")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SIGNATURE = "core.try_smallint(v jsonb)"


def upgrade() -> None:
    # An out-of-range code must reject its record, not fail the partition's cast.
    op.execute(
        f"""CREATE OR REPLACE FUNCTION {SIGNATURE}
        RETURNS smallint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN jsonb_typeof(v) IN ('number', 'string')
                         AND btrim(v #>> '{{}}') ~ '^-?[0-9]{{1,5}}$'
                         AND btrim(v #>> '{{}}')::integer BETWEEN -32768 AND 32767
                    THEN btrim(v #>> '{{}}')::smallint END $$"""
    )
    op.execute(f"COMMENT ON FUNCTION {SIGNATURE} IS 'Guarded cast for normalization: NULL on bad input.'")


def downgrade() -> None:
    op.execute(f"DROP FUNCTION IF EXISTS {SIGNATURE}")
