"""Guarded casts used by normalization: NULL instead of an error on bad input, so a bad
record becomes a reject rather than a failed partition.

They are plain SQL functions (inlined by the planner), so they cost no more than the
expressions they wrap.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = {
    "core.try_bigint(v jsonb)": r"""
        RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN jsonb_typeof(v) IN ('number', 'string')
                         AND btrim(v #>> '{}') ~ '^-?[0-9]{1,18}$'
                    THEN btrim(v #>> '{}')::bigint END $$""",
    "core.try_int(v jsonb)": r"""
        RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN jsonb_typeof(v) IN ('number', 'string')
                         AND btrim(v #>> '{}') ~ '^-?[0-9]{1,9}$'
                    THEN btrim(v #>> '{}')::integer END $$""",
    "core.try_local_timestamp(v jsonb, tz text)": r"""
        RETURNS timestamptz LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN jsonb_typeof(v) = 'string'
                         AND (v #>> '{}') ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[ T]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?$'
                    THEN ((v #>> '{}')::timestamp AT TIME ZONE tz) END $$""",
    "core.is_bad(v jsonb, typed anyelement)": r"""
        RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT v IS NOT NULL AND jsonb_typeof(v) <> 'null' AND typed IS NULL $$""",
}


def upgrade() -> None:
    for signature, body in FUNCTIONS.items():
        op.execute(f"CREATE OR REPLACE FUNCTION {signature} {body}")
        op.execute(f"COMMENT ON FUNCTION {signature} IS 'Guarded cast for normalization: NULL on bad input.'")


def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
