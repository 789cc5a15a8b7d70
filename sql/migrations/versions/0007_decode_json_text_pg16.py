"""core.decode_json_text without subtransactions where the server can test JSON first.

PostgreSQL 16 has ``pg_input_is_valid``: each round tests the text before casting it, instead
of catching the cast's error in an exception block (a subtransaction per block, which made
this function the cost of the push-log load). Same answers as 0004's version; on older
servers that version stays.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG16_BODY = r"""
    RETURNS jsonb LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
    DECLARE
        s text := btrim(t);
        q text;
        v jsonb;
    BEGIN
        FOR round IN 1..5 LOOP
            IF s IS NULL OR left(s, 1) NOT IN ('{', '[', '"') THEN
                RETURN NULL;
            END IF;
            v := NULL;
            IF left(s, 3) IN ('{\"', '[\"') OR left(s, 4) = '[{\"' THEN
                q := '"' || s || '"';
                IF pg_input_is_valid(q, 'jsonb') THEN
                    q := q::jsonb #>> '{}';
                    IF pg_input_is_valid(q, 'jsonb') THEN
                        v := q::jsonb;
                    END IF;
                END IF;
            END IF;
            IF v IS NULL AND pg_input_is_valid(s, 'jsonb') THEN
                v := s::jsonb;
            END IF;
            IF v IS NULL AND left(s, 1) <> '"' AND strpos(s, '\"') > 0 THEN
                q := '"' || s || '"';
                IF pg_input_is_valid(q, 'jsonb') THEN
                    v := q::jsonb;
                END IF;
            END IF;
            IF v IS NULL THEN
                RETURN NULL;
            ELSIF jsonb_typeof(v) IN ('object', 'array') THEN
                RETURN v;
            ELSIF jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = s THEN
                RETURN NULL;
            END IF;
            s := btrim(v #>> '{}');
        END LOOP;
        RETURN NULL;
    END $$"""


def _pg16() -> bool:
    version = op.get_bind().execute(sa.text("SELECT current_setting('server_version_num')::int")).scalar()
    return int(version) >= 160000


def upgrade() -> None:
    if _pg16():
        op.execute(f"CREATE OR REPLACE FUNCTION core.decode_json_text(t text) {PG16_BODY}")


def downgrade() -> None:
    # 0004's version is the one that works everywhere; re-create it from there if needed.
    pass
