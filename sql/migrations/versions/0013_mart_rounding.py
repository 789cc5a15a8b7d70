"""The mart shows durations and rates at the precision an analyst reads (issue 18).

``percentile_cont`` returns double precision, so ``mart.call_daily`` showed
``p90_duration_s`` 1266.9999999999998 (and ``mart.push_delivery_daily`` its latency
percentiles alike). One rule for every mart view now: a duration (an average or percentile
of seconds or milliseconds) is ``numeric`` with one decimal of its unit, which keeps the
half-units that averaging or interpolating whole units gives exactly; a rate or share is
``numeric`` 0..1 with four decimals (as 0011 already had them). Counts and sums of whole
units stay integers. The column comments say so.

The percentiles become ``numeric``, not ``round(...)::double precision``: a double prints
1267 rather than 1267.0, and sums of it bring the noise back, while ``numeric`` prints its
scale and adds exactly, like the averages and rates that were ``numeric`` already. The cast
to ``numeric`` keeps 15 significant digits, so 2.8499999999999996 (an interpolated 2.85)
becomes 2.85 and rounds to 2.9, as an analyst working it out by hand would.

A view's column cannot change type in ``CREATE OR REPLACE VIEW``, so ``mart.call_daily`` and
``mart.push_delivery_daily`` are dropped and created again in the migration's transaction
(a query meanwhile waits for its commit, then reads the new view). Their owner, grants and comments are read from the
catalog first and put back, so grants made since 0011 survive. Nothing of ours depends on
them; a view someone built on one makes the DROP fail, and the migration with it, rather
than drop theirs. The other views' rounded columns only get the comment. The downgrade puts
0011's definitions and comments back the same way.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = "coalesce((SELECT value FROM mart.settings WHERE name = 'reporting_timezone'), 'Asia/Shanghai')"

# 0011's definitions, for the downgrade.
OLD_VIEWS: dict[str, str] = {
    "mart.call_daily": f"""
SELECT (c.started_at AT TIME ZONE {TZ})::date AS day,
       c.source,
       c.direction,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate,
       round(avg(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 1) AS avg_duration_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL)
         AS p50_duration_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL)
         AS p90_duration_s,
       round(avg(c.ring_s), 1) AS avg_ring_s
FROM mart.calls c
WHERE NOT c.is_deleted
GROUP BY 1, 2, 3
""",
    "mart.push_delivery_daily": f"""
SELECT (p.create_time AT TIME ZONE {TZ})::date AS day,
       p.type AS push_type,
       m.name AS push_type_name,
       m.name_en AS push_type_name_en,
       count(*) AS deliveries,
       count(*) FILTER (WHERE p.result = 1) AS succeeded,
       round(count(*) FILTER (WHERE p.result = 1)::numeric / count(*), 4) AS success_rate,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.latency_ms) AS latency_p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY p.latency_ms) AS latency_p95_ms,
       coalesce(sum(p.retry) FILTER (WHERE p.retry > 0), 0) AS retries
FROM core.fact_push_log p
LEFT JOIN mart.map_push_type m ON m.push_type = p.type
WHERE p._gone_at IS NULL
GROUP BY 1, 2, 3, 4
""",
}

NEW_VIEWS: dict[str, str] = {
    "mart.call_daily": f"""
SELECT (c.started_at AT TIME ZONE {TZ})::date AS day,
       c.source,
       c.direction,
       count(*) AS calls,
       count(c.answered_at) AS answered,
       round(count(c.answered_at)::numeric / count(*), 4) AS answer_rate,
       round(avg(c.duration_s) FILTER (WHERE c.answered_at IS NOT NULL), 1) AS avg_duration_s,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY c.duration_s)
              FILTER (WHERE c.answered_at IS NOT NULL))::numeric, 1) AS p50_duration_s,
       round((percentile_cont(0.9) WITHIN GROUP (ORDER BY c.duration_s)
              FILTER (WHERE c.answered_at IS NOT NULL))::numeric, 1) AS p90_duration_s,
       round(avg(c.ring_s), 1) AS avg_ring_s
FROM mart.calls c
WHERE NOT c.is_deleted
GROUP BY 1, 2, 3
""",
    "mart.push_delivery_daily": f"""
SELECT (p.create_time AT TIME ZONE {TZ})::date AS day,
       p.type AS push_type,
       m.name AS push_type_name,
       m.name_en AS push_type_name_en,
       count(*) AS deliveries,
       count(*) FILTER (WHERE p.result = 1) AS succeeded,
       round(count(*) FILTER (WHERE p.result = 1)::numeric / count(*), 4) AS success_rate,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY p.latency_ms))::numeric, 1) AS latency_p50_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY p.latency_ms))::numeric, 1) AS latency_p95_ms,
       coalesce(sum(p.retry) FILTER (WHERE p.retry > 0), 0) AS retries
FROM core.fact_push_log p
LEFT JOIN mart.map_push_type m ON m.push_type = p.type
WHERE p._gone_at IS NULL
GROUP BY 1, 2, 3, 4
""",
}

# Column comments: 0011's, and this migration's that state the precision. Rates already said
# "four decimals".
OLD_COMMENTS: dict[str, dict[str, str]] = {
    "mart.call_daily": {
        "avg_duration_s": "Average talk time of answered calls, seconds.",
        "p50_duration_s": "Median talk time of answered calls, seconds (interpolated).",
        "p90_duration_s": "90th percentile of talk time of answered calls, seconds (interpolated).",
        "avg_ring_s": "Average ring time of the calls that have one, seconds.",
    },
    "mart.agent_daily": {
        "avg_duration_s": "Average talk time of answered calls, seconds.",
        "avg_ring_s": "Average ring time, seconds.",
    },
    "mart.push_delivery_daily": {
        "latency_p50_ms": "Median delivery latency (EndTime - StartTime), milliseconds.",
        "latency_p95_ms": "95th percentile of delivery latency, milliseconds.",
    },
}
NEW_COMMENTS: dict[str, dict[str, str]] = {
    "mart.call_daily": {
        "avg_duration_s": "Average talk time of answered calls, seconds, one decimal.",
        "p50_duration_s": "Median talk time of answered calls, seconds (interpolated), one decimal.",
        "p90_duration_s": "90th percentile of talk time of answered calls, seconds (interpolated), one decimal.",
        "avg_ring_s": "Average ring time of the calls that have one, seconds, one decimal.",
    },
    "mart.agent_daily": {
        "avg_duration_s": "Average talk time of answered calls, seconds, one decimal.",
        "avg_ring_s": "Average ring time, seconds, one decimal.",
    },
    "mart.push_delivery_daily": {
        "latency_p50_ms": "Median delivery latency (EndTime - StartTime), milliseconds (interpolated), "
        "one decimal.",
        "latency_p95_ms": "95th percentile of delivery latency, milliseconds (interpolated), one decimal.",
    },
}


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


OWNER_AND_COMMENT = text(
    "SELECT quote_ident(pg_get_userbyid(relowner)), obj_description(oid, 'pg_class') "
    "FROM pg_class WHERE oid = CAST(:v AS regclass)"
)
COLUMN_COMMENTS = text(
    "SELECT attname, col_description(attrelid, attnum) FROM pg_attribute "
    "WHERE attrelid = CAST(:v AS regclass) AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)
# Every grant but the owner's own (ALTER OWNER gives the owner theirs); grantee 0 is PUBLIC.
GRANTS = text(
    "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
    "a.privilege_type, a.is_grantable "
    "FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
    "WHERE c.oid = CAST(:v AS regclass) AND a.grantee <> c.relowner ORDER BY 1, 2"
)


def _recreate(name: str, body: str, comments: dict[str, str]) -> None:
    """Drop and create view ``name`` with its owner, grants and comments as they were, but
    for the column ``comments`` given."""
    conn = op.get_bind()
    owner, view_comment = conn.execute(OWNER_AND_COMMENT, {"v": name}).one()
    column_comments = dict(conn.execute(COLUMN_COMMENTS, {"v": name}).all())
    grants = conn.execute(GRANTS, {"v": name}).all()
    op.execute(f"DROP VIEW {name}")
    op.execute(f"CREATE VIEW {name} AS {body}")
    op.execute(f"ALTER VIEW {name} OWNER TO {owner}")
    for grantee, privilege, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        op.execute(f"GRANT {privilege} ON {name} TO {grantee}{option}")
    if view_comment is not None:
        op.execute(f"COMMENT ON VIEW {name} IS {_literal(view_comment)}")
    for column, comment in {**column_comments, **comments}.items():
        if comment is not None:
            op.execute(f"COMMENT ON COLUMN {name}.{column} IS {_literal(comment)}")


def _replace(views: dict[str, str], comments: dict[str, dict[str, str]]) -> None:
    for name, body in views.items():
        _recreate(name, body, comments.get(name, {}))
    for name, columns in comments.items():
        if name not in views:
            for column, comment in columns.items():
                op.execute(f"COMMENT ON COLUMN {name}.{column} IS {_literal(comment)}")


def upgrade() -> None:
    _replace(NEW_VIEWS, NEW_COMMENTS)


def downgrade() -> None:
    _replace(OLD_VIEWS, OLD_COMMENTS)
