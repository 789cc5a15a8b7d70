"""The mart's tables kept by reporting day: each day's rows are deleted and inserted again in
one transaction (the SELECTs of ``sql/mart/days/``), so a late record, a correction or a
soft delete in ``core`` shows once its day is written again.

Which days: the hourly ``mart`` job records, on ``mart/calls``, the reporting days its run
found touched by loads since its watermark (``touched_days``); the ``mart_days`` sensor asks
for those partitions of ``mart/<table>`` (pipelines/defs/mart/jobs.py). A full rebuild is a
backfill of every partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

import psycopg
from psycopg import sql

from pipelines.defs.mart import sqlfiles

# The tables with a day column, each written from sql/mart/days/<table>.sql.
DAY_TABLES = (
    "call_daily",
    "call_hourly",
    "agent_daily",
    "hangup_cause_daily",
    "push_delivery_daily",
    "api_usage_daily",
)
TABLES = (*DAY_TABLES, "customers")

# The reporting days of the facts' rows loaded or marked gone after %(since)s (the facts'
# _loaded_at and _gone_at indexes).
TOUCHED_DAYS = """
SELECT DISTINCT (t AT TIME ZONE %(tz)s)::date AS day FROM (
  SELECT created_at AS t FROM core.fact_crm_call WHERE _loaded_at > %(since)s OR _gone_at > %(since)s
  UNION ALL
  SELECT started_at FROM core.fact_trtc_call WHERE _loaded_at > %(since)s OR _gone_at > %(since)s
  UNION ALL
  SELECT create_time FROM core.fact_push_log WHERE _loaded_at > %(since)s OR _gone_at > %(since)s
  UNION ALL
  SELECT oper_time FROM core.fact_isales_api_call WHERE _loaded_at > %(since)s OR _gone_at > %(since)s
) f
ORDER BY 1
"""
TOUCHED = "CREATE TEMP TABLE IF NOT EXISTS mart_touched (subject text PRIMARY KEY) ON COMMIT DELETE ROWS"
MARK_TOUCHED = (
    "INSERT INTO pg_temp.mart_touched SELECT subject FROM core.customer_day WHERE day = %(day)s "
    "ON CONFLICT DO NOTHING"
)
# Writers of the tables kept by day (mart_days runs, core/customer_key) take this lock for their
# transaction, one at a time: two writers of one day would each delete what the other had not
# committed yet and both insert, and two writers of one customer would both insert its row.
WRITE_LOCK = "SELECT pg_advisory_xact_lock(7201611021)"
CUSTOMER_COLUMNS = (
    "customer_key",
    "customer_last4",
    "calls",
    "crm_calls",
    "trtc_calls",
    "sources",
    "first_call_at",
    "last_call_at",
)


def touched_days(conn: psycopg.Connection, since: datetime, tz: str) -> list[date]:
    return [row[0] for row in conn.execute(TOUCHED_DAYS, {"since": since, "tz": tz}).fetchall()]


def refresh_customers(conn: psycopg.Connection) -> int:
    """Write again the mart.customers rows of the subjects in pg_temp.mart_touched, from
    core.customer_day (in the caller's transaction); returns the rows written."""
    conn.execute(WRITE_LOCK)
    conn.execute(
        "DELETE FROM mart.customers m USING core.customer_key k "
        "WHERE k.subject IN (SELECT subject FROM pg_temp.mart_touched) AND m.customer_key = k.customer_key"
    )
    return conn.execute(
        sql.SQL("INSERT INTO mart.customers ({}) {}").format(
            sql.SQL(", ").join(map(sql.Identifier, CUSTOMER_COLUMNS)), sql.SQL(sqlfiles.read("customers"))
        )
    ).rowcount


def write_day(conn: psycopg.Connection, day: date, lo: datetime, hi: datetime, tz: str) -> dict[str, int]:
    """Replace one reporting day (the instants [lo, hi)) in every table kept by day and the
    customers who called that day, in the caller's transaction; returns rows written per table."""
    params = {"day": day, "lo": lo, "hi": hi, "tz": tz}
    conn.execute(WRITE_LOCK)
    written: dict[str, int] = {}
    for table in DAY_TABLES:
        target = sql.Identifier("mart", table)
        conn.execute(sql.SQL("DELETE FROM {} WHERE day = %(day)s").format(target), params)
        written[table] = conn.execute(
            sql.SQL("INSERT INTO {} {}").format(target, sql.SQL(sqlfiles.read(f"days/{table}"))), params
        ).rowcount
    conn.execute(TOUCHED)
    conn.execute(MARK_TOUCHED, params)  # who called that day before, and below, now
    conn.execute("DELETE FROM core.customer_day WHERE day = %(day)s", params)
    conn.execute(
        sql.SQL("INSERT INTO core.customer_day {}").format(sql.SQL(sqlfiles.read("days/customer_day"))),
        params,
    )
    conn.execute(MARK_TOUCHED, params)
    written["customers"] = refresh_customers(conn)
    return written


def day_ranges(days: Iterable[str], keys: Sequence[str]) -> list[tuple[str, str]]:
    """The runs that cover ``days`` (partition keys): one (first, last) per run of consecutive
    partitions. Days outside the partitions (before MART_START_DATE) are left out."""
    position = {key: i for i, key in enumerate(keys)}
    wanted = sorted({position[d] for d in days if d in position})
    ranges: list[tuple[str, str]] = []
    for i in wanted:
        if ranges and position[ranges[-1][1]] == i - 1:
            ranges[-1] = (ranges[-1][0], keys[i])
        else:
            ranges.append((keys[i], keys[i]))
    return ranges
