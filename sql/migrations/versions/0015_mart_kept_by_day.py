"""The mart's KPI views become tables kept by reporting day (issue 21).

``mart.call_daily``, ``call_hourly``, ``agent_daily``, ``hangup_cause_daily``,
``push_delivery_daily`` and ``api_usage_daily`` were views aggregating all of ``core`` on
every query; ``mart.customers`` grouped every call. They become tables with the same names,
columns, types and comments, written by the ``mart/<table>`` assets one reporting day at a
time (pipelines/defs/mart/days.py). ``core.customer_day`` holds each customer's calls per
day, summed into ``mart.customers`` for the customers of the days written; ``core.mart_state``
holds the hourly job's watermarks and the fingerprint of the PII key.

The upgrade fills the tables with what the views returned (in its transaction, so no query
sees them empty) and sets the facts' watermark to the newest load it read: the next hourly
run picks up from there. Owner and grants are read from each view and given to its table,
so grants made since 0011 survive. ``mart.calls`` and ``mart.push_deliveries`` stay views,
now defined in ``sql/mart/views/`` (applied by the mart asset). The facts get indexes on
``_loaded_at`` and ``_gone_at``: how the hourly job finds what loads changed.

The downgrade puts 0013's views back (0011's definitions, and 0013's for the two it changed)
with the tables' owner, grants and comments.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KPI = (
    "call_daily",
    "call_hourly",
    "agent_daily",
    "hangup_cause_daily",
    "customers",
    "push_delivery_daily",
    "api_usage_daily",
)
FACTS = ("core.fact_crm_call", "core.fact_trtc_call", "core.fact_push_log", "core.fact_isales_api_call")
TZ = "coalesce((SELECT value FROM mart.settings WHERE name = 'reporting_timezone'), 'Asia/Shanghai')"

# Every customer's calls per reporting day, all history (sql/mart/days/customer_day.sql, one day).
CUSTOMER_DAYS = f"""
INSERT INTO core.customer_day (day, subject, calls, crm_calls, trtc_calls, first_call_at, last_call_at)
SELECT (s.started_at AT TIME ZONE {TZ})::date, s.subject, count(*),
       count(*) FILTER (WHERE s.source = 'crm'), count(*) FILTER (WHERE s.source = 'trtc'),
       min(s.started_at), max(s.started_at)
FROM (
  SELECT 'crm' AS source, c.created_at AS started_at, core.normalize_phone(c.customer_number) AS subject
  FROM core.fact_crm_call c WHERE c._gone_at IS NULL
  UNION ALL
  SELECT 'trtc', t.started_at, core.app_user_subject(t.caller, ci.phone_number)
  FROM core.fact_trtc_call t LEFT JOIN core.customer_identity ci ON ci.app_user_id = t.caller
  WHERE t._gone_at IS NULL
) s
WHERE s.subject IS NOT NULL
GROUP BY 1, 2
"""
# The newest load or deletion the fill read: the hourly job's first watermark.
WATERMARK = (
    "INSERT INTO core.mart_state (name, value, updated_at) SELECT 'facts_seen', to_json(max(t)) #>> '{}', now() FROM ("
    + " UNION ALL ".join(
        f"SELECT max(_loaded_at) AS t FROM {f} UNION ALL SELECT max(_gone_at) FROM {f}" for f in FACTS
    )
    + ") m HAVING max(t) IS NOT NULL"
)

OWNER = text("SELECT quote_ident(pg_get_userbyid(relowner)) FROM pg_class WHERE oid = CAST(:v AS regclass)")
COMMENTS = text(
    "SELECT obj_description(c.oid, 'pg_class'), a.attname, col_description(c.oid, a.attnum) "
    "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
    "WHERE c.oid = CAST(:v AS regclass) ORDER BY a.attnum"
)
# Every grant but the owner's own (ALTER OWNER gives the owner theirs); grantee 0 is PUBLIC.
GRANTS = text(
    "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END, "
    "a.privilege_type, a.is_grantable "
    "FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
    "WHERE c.oid = CAST(:v AS regclass) AND a.grantee <> c.relowner ORDER BY 1, 2"
)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _privileges(name: str) -> tuple[str, list]:
    conn = op.get_bind()
    return conn.execute(OWNER, {"v": name}).scalar_one(), conn.execute(GRANTS, {"v": name}).all()


def _give(kind: str, name: str, owner: str, grants: list) -> None:
    op.execute(f"ALTER {kind} {name} OWNER TO {owner}")
    op.execute(f"REVOKE ALL ON {name} FROM PUBLIC")
    for grantee, privilege, grantable in grants:
        option = " WITH GRANT OPTION" if grantable else ""
        op.execute(f"GRANT {privilege} ON {name} TO {grantee}{option}")


def upgrade() -> None:
    kept = {view: _privileges(f"mart.{view}") for view in KPI}
    for view in KPI:
        op.execute(f"ALTER VIEW mart.{view} RENAME TO {view}_0013")
    _create_tables()
    _create_fact_indexes()
    op.execute(WATERMARK)
    for view in KPI:
        op.execute(f"INSERT INTO mart.{view} SELECT * FROM mart.{view}_0013")
    op.execute(CUSTOMER_DAYS)
    for view in KPI:
        op.execute(f"DROP VIEW mart.{view}_0013")
        _give("TABLE", f"mart.{view}", *kept[view])
    owner = kept["call_daily"][0]
    for table in ("core.customer_day", "core.mart_state"):
        op.execute(f"ALTER TABLE {table} OWNER TO {owner}")
    for table in (f"mart.{v}" for v in KPI):
        op.execute(f"ANALYZE {table}")


def _old_views() -> dict[str, str]:
    """0013's view definitions: 0011's, but for the two 0013 replaced."""

    def load(name: str):  # noqa: ANN202
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    views = {**load("0011_mart").VIEWS, **load("0013_mart_rounding").NEW_VIEWS}
    return {view: views[f"mart.{view}"] for view in KPI}


def downgrade() -> None:
    conn = op.get_bind()
    kept = {view: _privileges(f"mart.{view}") for view in KPI}
    comments = {view: conn.execute(COMMENTS, {"v": f"mart.{view}"}).all() for view in KPI}
    _drop_tables()
    _drop_fact_indexes()
    for view, body in _old_views().items():
        op.execute(f"CREATE VIEW mart.{view} AS {body}")
        _give("VIEW", f"mart.{view}", *kept[view])
        op.execute(f"COMMENT ON VIEW mart.{view} IS {_literal(comments[view][0][0])}")
        for _, column, comment in comments[view]:
            op.execute(f"COMMENT ON COLUMN mart.{view}.{column} IS {_literal(comment)}")


def _create_tables() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table(
        "customer_day",
        sa.Column(
            "day", sa.Date(), nullable=False, comment="Reporting day (mart.settings reporting_timezone)."
        ),
        sa.Column(
            "subject",
            sa.Text(),
            nullable=False,
            comment="The customer as core.customer_key.subject (a normalized number or 'app:<user id>').",
        ),
        sa.Column(
            "calls",
            sa.BigInteger(),
            nullable=False,
            comment="The customer's calls that day, all sources (not deleted).",
        ),
        sa.Column("crm_calls", sa.BigInteger(), nullable=False, comment="Of which CRM calls."),
        sa.Column(
            "trtc_calls", sa.BigInteger(), nullable=False, comment="Of which TRTC calls (as the caller)."
        ),
        sa.Column(
            "first_call_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="The customer's first call that day.",
        ),
        sa.Column(
            "last_call_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="The customer's last call that day.",
        ),
        sa.PrimaryKeyConstraint("day", "subject", name=op.f("pk_customer_day")),
        schema="core",
        comment="Per reporting day and customer, their calls: written with the day's KPI rows (mart/<table> assets) and summed into mart.customers for the customers of the days written.",
    )
    op.create_index("ix_customer_day_subject", "customer_day", ["subject"], unique=False, schema="core")
    op.create_table(
        "mart_state",
        sa.Column(
            "name", sa.Text(), nullable=False, comment="What is remembered (a watermark, a fingerprint)."
        ),
        sa.Column("value", sa.Text(), nullable=False, comment="Its value, as text."),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the pipeline last wrote it.",
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_mart_state")),
        schema="core",
        comment="What the mart's hourly assets remember between runs: the facts' load watermarks they read from, the fingerprint of the PII key the customer keys were made under (never the key) and the hash of each applied view file.",
    )
    op.create_table(
        "agent_daily",
        sa.Column(
            "day",
            sa.Date(),
            nullable=True,
            comment="Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
        ),
        sa.Column("source", sa.Text(), nullable=True, comment="crm or trtc (mart.calls.source)."),
        sa.Column("agent", sa.Text(), nullable=True, comment="The agent's display name (mart.calls.agent)."),
        sa.Column(
            "calls",
            sa.BigInteger(),
            nullable=True,
            comment="Calls that their source still returns (mart.calls with is_deleted false).",
        ),
        sa.Column(
            "answered",
            sa.BigInteger(),
            nullable=True,
            comment="Calls answered (answered_at set: outcome answered or interrupted).",
        ),
        sa.Column(
            "answer_rate", sa.Numeric(), nullable=True, comment="answered / calls, 0..1, four decimals."
        ),
        sa.Column(
            "talk_s", sa.BigInteger(), nullable=True, comment="Total talk time of answered calls, seconds."
        ),
        sa.Column(
            "avg_duration_s",
            sa.Numeric(),
            nullable=True,
            comment="Average talk time of answered calls, seconds, one decimal.",
        ),
        sa.Column(
            "avg_ring_s", sa.Numeric(), nullable=True, comment="Average ring time, seconds, one decimal."
        ),
        schema="mart",
        comment="Calls per day and agent (calls with a known agent: the CRM's).",
    )
    op.create_index("ix_agent_daily_day", "agent_daily", ["day"], unique=False, schema="mart")
    op.create_table(
        "api_usage_daily",
        sa.Column(
            "day",
            sa.Date(),
            nullable=True,
            comment="Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai). Of operTime.",
        ),
        sa.Column("vdn_id", sa.Integer(), nullable=True, comment="Virtual call center (VDN)."),
        sa.Column(
            "url_pattern",
            sa.Text(),
            nullable=True,
            comment="The endpoint: the URL path with the VDN as {vdnId} and other ids as {id}; the query string is dropped.",
        ),
        sa.Column(
            "calls", sa.BigInteger(), nullable=True, comment="API calls logged (deleted rows left out)."
        ),
        sa.Column(
            "errors", sa.BigInteger(), nullable=True, comment="Calls whose result code is not 0200000."
        ),
        sa.Column("error_rate", sa.Numeric(), nullable=True, comment="errors / calls, 0..1, four decimals."),
        sa.Column(
            "result_codes",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=True,
            comment='Calls per result code, e.g. {"0200000": 120, "02000001": 3} (mart.map_isales_result_code; \'none\' when the log had no code).',
        ),
        schema="mart",
        comment="Huawei CC-iSales open-API calls per day, VDN and endpoint: volume, errors and result codes.",
    )
    op.create_index("ix_api_usage_daily_day", "api_usage_daily", ["day"], unique=False, schema="mart")
    op.create_table(
        "call_daily",
        sa.Column(
            "day",
            sa.Date(),
            nullable=True,
            comment="Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
        ),
        sa.Column("source", sa.Text(), nullable=True, comment="crm or trtc (mart.calls.source)."),
        sa.Column("direction", sa.Text(), nullable=True, comment="mart.calls.direction."),
        sa.Column(
            "calls",
            sa.BigInteger(),
            nullable=True,
            comment="Calls that their source still returns (mart.calls with is_deleted false).",
        ),
        sa.Column(
            "answered",
            sa.BigInteger(),
            nullable=True,
            comment="Calls answered (answered_at set: outcome answered or interrupted).",
        ),
        sa.Column(
            "answer_rate", sa.Numeric(), nullable=True, comment="answered / calls, 0..1, four decimals."
        ),
        sa.Column(
            "avg_duration_s",
            sa.Numeric(),
            nullable=True,
            comment="Average talk time of answered calls, seconds, one decimal.",
        ),
        sa.Column(
            "p50_duration_s",
            sa.Numeric(),
            nullable=True,
            comment="Median talk time of answered calls, seconds (interpolated), one decimal.",
        ),
        sa.Column(
            "p90_duration_s",
            sa.Numeric(),
            nullable=True,
            comment="90th percentile of talk time of answered calls, seconds (interpolated), one decimal.",
        ),
        sa.Column(
            "avg_ring_s",
            sa.Numeric(),
            nullable=True,
            comment="Average ring time of the calls that have one, seconds, one decimal.",
        ),
        schema="mart",
        comment="Calls per day, source and direction: volume, answer rate, talk time and ring time.",
    )
    op.create_index("ix_call_daily_day", "call_daily", ["day"], unique=False, schema="mart")
    op.create_table(
        "call_hourly",
        sa.Column(
            "day",
            sa.Date(),
            nullable=True,
            comment="Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
        ),
        sa.Column(
            "hour", sa.Integer(), nullable=True, comment="Hour of the day in the reporting zone, 0..23."
        ),
        sa.Column("source", sa.Text(), nullable=True, comment="crm or trtc (mart.calls.source)."),
        sa.Column("direction", sa.Text(), nullable=True, comment="mart.calls.direction."),
        sa.Column(
            "calls",
            sa.BigInteger(),
            nullable=True,
            comment="Calls that their source still returns (mart.calls with is_deleted false).",
        ),
        sa.Column(
            "answered",
            sa.BigInteger(),
            nullable=True,
            comment="Calls answered (answered_at set: outcome answered or interrupted).",
        ),
        sa.Column(
            "answer_rate", sa.Numeric(), nullable=True, comment="answered / calls, 0..1, four decimals."
        ),
        schema="mart",
        comment="Calls per hour of the day (reporting zone), source and direction: the load curve.",
    )
    op.create_index("ix_call_hourly_day", "call_hourly", ["day"], unique=False, schema="mart")
    op.create_table(
        "customers",
        sa.Column("customer_key", sa.Text(), nullable=False, comment="mart.calls.customer_key."),
        sa.Column(
            "customer_last4",
            sa.Text(),
            nullable=True,
            comment="Last four digits of the customer's number; NULL for an app user without one.",
        ),
        sa.Column(
            "calls",
            sa.BigInteger(),
            nullable=True,
            comment="The customer's calls, all sources (not deleted).",
        ),
        sa.Column("crm_calls", sa.BigInteger(), nullable=True, comment="Of which CRM calls."),
        sa.Column(
            "trtc_calls", sa.BigInteger(), nullable=True, comment="Of which TRTC calls (as the caller)."
        ),
        sa.Column(
            "sources",
            sa.ARRAY(sa.Text()),
            nullable=True,
            comment="The sources the customer called through, sorted (e.g. {crm,trtc}).",
        ),
        sa.Column(
            "first_call_at", sa.DateTime(timezone=True), nullable=True, comment="The customer's first call."
        ),
        sa.Column(
            "last_call_at", sa.DateTime(timezone=True), nullable=True, comment="The customer's last call."
        ),
        sa.PrimaryKeyConstraint("customer_key", name=op.f("pk_customers")),
        schema="mart",
        comment="One row per pseudonymous customer (customer_key) with their calls across sources: count and join customers without any phone number.",
    )
    op.create_index(
        "ix_customers_both_sources",
        "customers",
        ["customer_key"],
        unique=False,
        schema="mart",
        postgresql_where=sa.text("sources @> ARRAY['crm'::text, 'trtc'::text]"),
    )
    op.create_table(
        "hangup_cause_daily",
        sa.Column(
            "day",
            sa.Date(),
            nullable=True,
            comment="Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai).",
        ),
        sa.Column("source", sa.Text(), nullable=True, comment="crm or trtc (mart.calls.source)."),
        sa.Column("outcome", sa.Text(), nullable=True, comment="mart.calls.outcome."),
        sa.Column("hangup_side", sa.Text(), nullable=True, comment="mart.calls.hangup_side."),
        sa.Column("hangup_cause", sa.Text(), nullable=True, comment="mart.calls.hangup_cause."),
        sa.Column(
            "calls",
            sa.BigInteger(),
            nullable=True,
            comment="Calls that their source still returns (mart.calls with is_deleted false).",
        ),
        schema="mart",
        comment="Calls per day, source, outcome, hangup side and hangup cause: why calls fail.",
    )
    op.create_index("ix_hangup_cause_daily_day", "hangup_cause_daily", ["day"], unique=False, schema="mart")
    op.create_table(
        "push_delivery_daily",
        sa.Column(
            "day",
            sa.Date(),
            nullable=True,
            comment="Day in the reporting zone (mart.settings reporting_timezone, from REPORTING_TIMEZONE; default Asia/Shanghai). Of the push's CreateTime.",
        ),
        sa.Column(
            "push_type", sa.Integer(), nullable=True, comment="Push type code (1..29, mart.map_push_type)."
        ),
        sa.Column(
            "push_type_name",
            sa.Text(),
            nullable=True,
            comment="The type's documented name, Chinese (mart.map_push_type.name).",
        ),
        sa.Column(
            "push_type_name_en",
            sa.Text(),
            nullable=True,
            comment="The type's name in English (mart.map_push_type.name_en).",
        ),
        sa.Column("deliveries", sa.BigInteger(), nullable=True, comment="Pushes logged."),
        sa.Column("succeeded", sa.BigInteger(), nullable=True, comment="Pushes with Result 1 (success)."),
        sa.Column(
            "success_rate",
            sa.Numeric(),
            nullable=True,
            comment="succeeded / deliveries, 0..1, four decimals.",
        ),
        sa.Column(
            "latency_p50_ms",
            sa.Numeric(),
            nullable=True,
            comment="Median delivery latency (EndTime - StartTime), milliseconds (interpolated), one decimal.",
        ),
        sa.Column(
            "latency_p95_ms",
            sa.Numeric(),
            nullable=True,
            comment="95th percentile of delivery latency, milliseconds (interpolated), one decimal.",
        ),
        sa.Column(
            "retries",
            sa.BigInteger(),
            nullable=True,
            comment="Retries spent (sum of the pushes' Retry counts).",
        ),
        schema="mart",
        comment="Webhook (push) deliveries of the call center per day and push type: success and latency (Alibaba Cloud VMS push logs; deleted rows left out).",
    )
    op.create_index("ix_push_delivery_daily_day", "push_delivery_daily", ["day"], unique=False, schema="mart")
    # ### end Alembic commands ###


def _drop_tables() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.drop_index("ix_push_delivery_daily_day", table_name="push_delivery_daily", schema="mart")
    op.drop_table("push_delivery_daily", schema="mart")
    op.drop_index("ix_hangup_cause_daily_day", table_name="hangup_cause_daily", schema="mart")
    op.drop_table("hangup_cause_daily", schema="mart")
    op.drop_index("ix_customers_both_sources", table_name="customers", schema="mart")
    op.drop_table("customers", schema="mart")
    op.drop_index("ix_call_hourly_day", table_name="call_hourly", schema="mart")
    op.drop_table("call_hourly", schema="mart")
    op.drop_index("ix_call_daily_day", table_name="call_daily", schema="mart")
    op.drop_table("call_daily", schema="mart")
    op.drop_index("ix_api_usage_daily_day", table_name="api_usage_daily", schema="mart")
    op.drop_table("api_usage_daily", schema="mart")
    op.drop_index("ix_agent_daily_day", table_name="agent_daily", schema="mart")
    op.drop_table("agent_daily", schema="mart")
    op.drop_table("mart_state", schema="core")
    op.drop_index("ix_customer_day_subject", table_name="customer_day", schema="core")
    op.drop_table("customer_day", schema="core")
    # ### end Alembic commands ###


def _create_fact_indexes() -> None:
    op.create_index(
        "ix_fact_crm_call_gone_at",
        "fact_crm_call",
        ["_gone_at"],
        unique=False,
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
    op.create_index(
        "ix_fact_crm_call_loaded_at", "fact_crm_call", ["_loaded_at"], unique=False, schema="core"
    )
    op.create_index(
        "ix_fact_isales_api_call_gone_at",
        "fact_isales_api_call",
        ["_gone_at"],
        unique=False,
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
    op.create_index(
        "ix_fact_isales_api_call_loaded_at",
        "fact_isales_api_call",
        ["_loaded_at"],
        unique=False,
        schema="core",
    )
    op.create_index(
        "ix_fact_push_log_gone_at",
        "fact_push_log",
        ["_gone_at"],
        unique=False,
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
    op.create_index(
        "ix_fact_push_log_loaded_at", "fact_push_log", ["_loaded_at"], unique=False, schema="core"
    )
    op.create_index(
        "ix_fact_trtc_call_gone_at",
        "fact_trtc_call",
        ["_gone_at"],
        unique=False,
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
    op.create_index(
        "ix_fact_trtc_call_loaded_at", "fact_trtc_call", ["_loaded_at"], unique=False, schema="core"
    )


def _drop_fact_indexes() -> None:
    op.drop_index("ix_fact_trtc_call_loaded_at", table_name="fact_trtc_call", schema="core")
    op.drop_index(
        "ix_fact_trtc_call_gone_at",
        table_name="fact_trtc_call",
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
    op.drop_index("ix_fact_push_log_loaded_at", table_name="fact_push_log", schema="core")
    op.drop_index(
        "ix_fact_push_log_gone_at",
        table_name="fact_push_log",
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
    op.drop_index("ix_fact_isales_api_call_loaded_at", table_name="fact_isales_api_call", schema="core")
    op.drop_index(
        "ix_fact_isales_api_call_gone_at",
        table_name="fact_isales_api_call",
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
    op.drop_index("ix_fact_crm_call_loaded_at", table_name="fact_crm_call", schema="core")
    op.drop_index(
        "ix_fact_crm_call_gone_at",
        table_name="fact_crm_call",
        schema="core",
        postgresql_where=sa.text("_gone_at IS NOT NULL"),
    )
