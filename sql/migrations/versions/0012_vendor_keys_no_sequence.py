"""Vendor keys are not generated: drop the sequences SQLAlchemy attached by accident.

A lone integer primary key becomes SERIAL in SQLAlchemy unless told otherwise, so four vendor
keys got a sequence default: core.fact_crm_call.id, core.fact_crm_call_ivr.id,
core.dim_crm_hangup_reason.id and core.dim_push_type.type, and so did four vendor codes of the
mart's mapping tables. A row without the vendor's key would then silently get a made-up one;
now it fails (the models say autoincrement=False).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = (
    ("core", "fact_crm_call", "id"),
    ("core", "fact_crm_call_ivr", "id"),
    ("core", "dim_crm_hangup_reason", "id"),
    ("core", "dim_push_type", "type"),
    ("mart", "map_crm_direction", "call_type"),
    ("mart", "map_crm_outcome", "result"),
    ("mart", "map_crm_hangup_side", "drop_side"),
    ("mart", "map_push_type", "push_type"),
)


def upgrade() -> None:
    for schema, table, column in KEYS:
        op.execute(f"ALTER TABLE {schema}.{table} ALTER COLUMN {column} DROP DEFAULT")
        op.execute(f"DROP SEQUENCE IF EXISTS {schema}.{table}_{column}_seq")


def downgrade() -> None:
    for schema, table, column in KEYS:
        sequence = f"{schema}.{table}_{column}_seq"
        op.execute(f"CREATE SEQUENCE IF NOT EXISTS {sequence}")
        # OWNED BY needs the table's owner (loader, since 0011) to own the sequence too.
        op.execute(
            f"DO $$ BEGIN EXECUTE format('ALTER SEQUENCE {sequence} OWNER TO %I', "
            f"(SELECT tableowner FROM pg_tables WHERE schemaname = '{schema}' AND tablename = '{table}')); END $$"
        )
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {schema}.{table}.{column}")
        op.execute(f"ALTER TABLE {schema}.{table} ALTER COLUMN {column} SET DEFAULT nextval('{sequence}')")
