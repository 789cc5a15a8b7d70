"""The mart's assets (group ``mart``), downstream of the core facts:

- ``core/customer_identity``: the operator's identity map, from CUSTOMER_IDENTITY_FILE.
- ``core/customer_key``: the customers of the calls loaded since its watermark, keyed (the
  one place the PII key is used; see ``pii``).
- ``mart/calls``, ``mart/push_deliveries``: the row-level views, always as current as
  ``core``; materializing them applies their files (``sql/mart/views/``) when changed, writes
  the reporting zone, finds the reporting days that loads touched since the last run (the
  ``days_touched`` metadata the ``mart_days`` sensor reads) and checks what changed.
- ``mart/<table>`` (``tables.py``): the KPI tables and ``mart.customers``, kept by reporting day.
- ``mart/daily_kpis``: one reporting day's calls, answer rate and push success rate as
  metadata, so the UI plots them over the partitions.

No step counts or scans all history on the hourly path: row counts are the planner's
estimates; the weekly ``mart_full_scan`` job checks everything.
"""

import time
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Config,
    DailyPartitionsDefinition,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from psycopg import sql
from pydantic import Field

from models import mart as mart_models
from pipelines.defs.mart import checks, days, identity, pii, sqlfiles, state
from pipelines.lib import settings
from pipelines.lib.ingest import OWNERS
from pipelines.lib.schema import schema_from_comments, table_metadata
from pipelines.lib.warehouse import WarehouseResource

GROUP = "mart"
KINDS = {"postgres"}
IDENTITY_KEY = AssetKey(["core", "customer_identity"])
CUSTOMER_KEY_KEY = AssetKey(["core", "customer_key"])
KPI_KEY = AssetKey(["mart", "daily_kpis"])
CRM_CALL, CRM_RECORDING, CRM_HANGUP = (
    AssetKey(["core", "fact_crm_call"]),
    AssetKey(["core", "fact_crm_call_recording"]),
    AssetKey(["core", "dim_crm_hangup_reason"]),
)
TRTC_CALL = AssetKey(["core", "fact_trtc_call"])
PUSH_LOG, ISALES_CALL = AssetKey(["core", "fact_push_log"]), AssetKey(["core", "fact_isales_api_call"])


def view_key(view: str) -> AssetKey:
    return AssetKey(["mart", view])


# What each view reads.
VIEW_DEPS: dict[str, list[AssetKey]] = {
    "calls": [CRM_CALL, CRM_RECORDING, CRM_HANGUP, TRTC_CALL, CUSTOMER_KEY_KEY, IDENTITY_KEY],
    "push_deliveries": [PUSH_LOG],
}
# What each table kept by day is written from.
TABLE_DEPS: dict[str, list[AssetKey]] = {
    "call_daily": [view_key("calls")],
    "call_hourly": [view_key("calls")],
    "agent_daily": [view_key("calls")],
    "hangup_cause_daily": [view_key("calls")],
    "customers": [view_key("calls"), CUSTOMER_KEY_KEY],
    "push_delivery_daily": [PUSH_LOG],
    "api_usage_daily": [ISALES_CALL],
}
DAYS_STATE = "facts_seen"  # the mart/calls run's watermark over the facts' loads
# The open windows refresh every 15 minutes; the mart job runs every 15 minutes after them:
# two missed runs warn, six fail.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(minutes=90), warn_window=timedelta(minutes=30))

reporting_daily = DailyPartitionsDefinition(
    start_date=settings.start_date("mart"), timezone=settings.timezone("reporting"), end_offset=1
)


# ------------------------------------------------------------------------------------------
# core/customer_identity


@asset(
    key=IDENTITY_KEY,
    group_name=GROUP,
    kinds=KINDS,
    owners=OWNERS,
    description="The operator's identity map (CUSTOMER_IDENTITY_FILE, CSV app_user_id,phone_number): links app "
    "user ids (TRTC) to phone numbers, so an app user gets the customer_key of their number. Replaced as a "
    "whole on each run; empty when no file is configured (the demo uses the shipped demo file).",
    metadata=table_metadata(mart_models.customer_identity),
    freshness_policy=FRESHNESS,
)
def customer_identity(
    context: AssetExecutionContext, warehouse: WarehouseResource, customers: pii.CustomersResource
) -> MaterializeResult:
    with warehouse.connect() as conn:
        path = customers.identity_path(customers.is_demo(conn))
        parsed = identity.read(path) if path else identity.IdentityFile()
        identity.replace(conn, parsed.rows)
        unrecognized = conn.execute(
            "SELECT count(*) FROM core.customer_identity WHERE core.normalize_phone(phone_number) IS NULL"
        ).fetchone()[0]
    if path is None:
        context.log.info(
            f"{pii.IDENTITY_VARIABLE} is not set: no identity map (core.customer_identity is empty)."
        )
    return MaterializeResult(
        metadata={
            "file": path.name if path else "none",
            "dagster/row_count": MetadataValue.int(len(parsed.rows)),
            "duplicate_ids_skipped": parsed.duplicates,
            "blank_rows_skipped": parsed.blank,
            "numbers_not_recognized": int(unrecognized),
        }
    )


# ------------------------------------------------------------------------------------------
# core/customer_key

# The customers of the calls loaded since the watermark, and every number of the identity map
# (replaced whole each run: a newly mapped app user's calls get their number's key, whenever
# they were loaded). The expressions are mart.calls' (core.app_user_subject its TRTC one).
SUBJECTS = """
SELECT core.normalize_phone(customer_number) AS subject FROM core.fact_crm_call WHERE _loaded_at > %(since)s
UNION
SELECT core.app_user_subject(t.caller, ci.phone_number) FROM core.fact_trtc_call t
LEFT JOIN core.customer_identity ci ON ci.app_user_id = t.caller
WHERE t._loaded_at > %(since)s
UNION
SELECT core.normalize_phone(phone_number) FROM core.customer_identity
"""
# Only subjects not yet keyed under this key are hashed; rows of another key are rewritten.
# The subjects keyed are marked touched: their mart.customers rows are written again.
UPSERT = f"""
WITH s AS ({SUBJECTS}), up AS (
INSERT INTO core.customer_key AS k (subject, customer_key, last4, key_id, _loaded_at)
SELECT s.subject, {pii.CUSTOMER_KEY_SQL.format(subject="s.subject")},
       CASE WHEN s.subject LIKE '+%%' THEN right(s.subject, 4) END, %(key_id)s, now()
FROM s
WHERE s.subject IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM core.customer_key o WHERE o.subject = s.subject AND o.key_id = %(key_id)s)
ON CONFLICT (subject) DO UPDATE
SET customer_key = EXCLUDED.customer_key, last4 = EXCLUDED.last4, key_id = EXCLUDED.key_id,
    _loaded_at = EXCLUDED._loaded_at
RETURNING subject)
INSERT INTO pg_temp.mart_touched SELECT subject FROM up ON CONFLICT DO NOTHING
"""
KEY_STATE, KEY_ID_STATE = "customer_key_seen", "customer_key_id"


def estimated_rows(conn: psycopg.Connection, *relations: str) -> int:
    """The planner's row estimate (pg_class.reltuples, kept by autovacuum): no scan."""
    return int(
        conn.execute(
            "SELECT coalesce(sum(greatest(reltuples, 0)), 0) FROM pg_class WHERE oid = ANY(%s::regclass[])",
            (list(relations),),
        ).fetchone()[0]
    )


@asset(
    key=CUSTOMER_KEY_KEY,
    group_name=GROUP,
    kinds=KINDS,
    owners=OWNERS,
    deps=[CRM_CALL, TRTC_CALL, IDENTITY_KEY],
    description="Every customer of mart.calls (CRM numbers; TRTC callers, through the identity map), with "
    "their customer_key: HMAC-SHA256 of the normalized number (or 'app:<user id>') under PII_HASH_KEY, "
    "computed in PostgreSQL with the key as a bound parameter; the key is never stored. Each run keys the "
    "customers of the calls loaded since its watermark (core.mart_state) and writes their mart.customers "
    "rows; a new key (its fingerprint differs from the one stored) rewrites every row.",
    metadata=table_metadata(mart_models.customer_key),
    freshness_policy=FRESHNESS,
)
def customer_key(warehouse: WarehouseResource, customers: pii.CustomersResource) -> MaterializeResult:
    started = time.monotonic()
    with warehouse.connect() as conn:
        key, source = customers.key(customers.is_demo(conn))
        params = {**pii.pads(key), "key_id": pii.key_id(key)}
        rekey = state.get(conn, KEY_ID_STATE) != params["key_id"]
        since, newest = state.since(conn, KEY_STATE)
        if rekey:
            since = state.EVERYTHING
        conn.execute(days.TOUCHED)
        conn.execute(days.WRITE_LOCK)  # mart.customers has one writer at a time
        keyed = conn.execute(UPSERT, {**params, "since": since}).rowcount
        stale = 0
        if rekey:
            # Subjects no longer in any fact keep their key; keys of an older key go, and every
            # customer's mart.customers row is written again under the new key.
            stale = conn.execute("DELETE FROM core.customer_key WHERE key_id <> %(key_id)s", params).rowcount
            conn.execute("DELETE FROM mart.customers")
            conn.execute("INSERT INTO pg_temp.mart_touched SELECT DISTINCT subject FROM core.customer_day")
        customer_rows = days.refresh_customers(conn)
        state.put(conn, KEY_ID_STATE, params["key_id"])
        state.advance(conn, KEY_STATE, newest)
        conn.commit()
        rows = estimated_rows(conn, "core.customer_key")
    return MaterializeResult(
        metadata={
            "key": source,
            "full_rekey": rekey,
            "read_from": since.isoformat(),
            "keyed_now": int(keyed),
            "removed_other_key": int(stale),
            "customers_written": int(customer_rows),
            "rows_estimate": MetadataValue.int(rows),
            "elapsed_s": round(time.monotonic() - started, 3),
        }
    )


# ------------------------------------------------------------------------------------------
# mart views


class MartScan(Config):
    full_scan: bool = Field(
        default=False,
        description="Check every row of the mart and its facts (the weekly mart_full_scan job) rather than "
        "what loads changed since the last run.",
    )


def reporting_timezone() -> str:
    return settings.timezone("reporting")


def write_timezone(conn: psycopg.Connection, tz: str) -> None:
    conn.execute("UPDATE mart.settings SET value = %s WHERE name = 'reporting_timezone'", (tz,))


def day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    """The instants [start, end) of reporting day ``day`` in zone ``tz``."""
    zone = ZoneInfo(tz)
    return datetime.combine(day, dt_time(), zone), datetime.combine(day + timedelta(days=1), dt_time(), zone)


# What each view's rows of one reporting day are (the hourly phone-number scan).
VIEW_DAY_SCOPES = {
    "calls": sql.SQL("started_at >= %(lo)s AND started_at < %(hi)s"),
    "push_deliveries": sql.SQL("logged_at >= %(lo)s AND logged_at < %(hi)s"),
}


def _scan_views(conn: psycopg.Connection, touched: list[date], tz: str) -> Counter:
    counts: Counter = Counter({view: 0 for view in VIEW_DEPS})
    for day in touched:
        lo, hi = day_bounds(day, tz)
        counts.update(checks.phone_like_counts(conn, VIEW_DAY_SCOPES, {"lo": lo, "hi": hi}))
    return counts


@multi_asset(
    name="mart_views",
    specs=[
        AssetSpec(
            view_key(view),
            group_name=GROUP,
            kinds=KINDS,
            owners=OWNERS,
            deps=deps,
            description=f"mart.{view}, a view defined in sql/mart/views/{view}.sql (applied when the file "
            "changes); its column schema is read back from the database's comments.",
            metadata={"dagster/table_name": f"mart.{view}"},
            freshness_policy=FRESHNESS,
        )
        for view, deps in VIEW_DEPS.items()
    ],
    check_specs=[
        AssetCheckSpec(name, asset=view_key("calls"), description=text)
        for name, text in checks.DESCRIPTIONS.items()
    ],
)
def mart_views(context: AssetExecutionContext, config: MartScan, warehouse: WarehouseResource):  # noqa: ANN201
    tz = reporting_timezone()
    calls = view_key("calls")
    with warehouse.connect() as conn:
        write_timezone(conn, tz)
        applied = sqlfiles.apply_views(conn)
        since, newest = state.since(conn, DAYS_STATE)
        if config.full_scan:
            # Everything, and the watermark stays: the hourly job's days are not this job's.
            touched: list[date] = []
            scope = "all rows"
            results = [
                checks.customers_keyed(conn, calls, state.EVERYTHING),
                checks.codes_mapped(conn, calls, state.EVERYTHING),
                checks.no_phone_numbers(calls, checks.phone_like_counts(conn), scope),
            ]
        else:
            touched = days.touched_days(conn, since, tz)
            scope = f"{len(touched)} days touched since {since.isoformat()}"
            results = [
                checks.customers_keyed(conn, calls, since),
                checks.codes_mapped(conn, calls, since),
                checks.no_phone_numbers(calls, _scan_views(conn, touched, tz), scope),
            ]
            state.advance(conn, DAYS_STATE, newest)
        conn.commit()
        schemas = {view: schema_from_comments(conn, f"mart.{view}") for view in VIEW_DEPS}
        estimates = {
            "calls": estimated_rows(conn, "core.fact_crm_call", "core.fact_trtc_call"),
            "push_deliveries": estimated_rows(conn, "core.fact_push_log"),
        }
    if applied:
        context.log.info(f"Applied the view files of {', '.join(applied)}.")
    for view in VIEW_DEPS:
        metadata = {
            "dagster/column_schema": schemas[view],
            "reporting_timezone": tz,
            "view_applied": view in applied,
            "rows_estimate": MetadataValue.int(estimates[view]),
        }
        if view == "calls":
            metadata["days_touched"] = MetadataValue.json([d.isoformat() for d in touched])
            metadata["scope"] = scope
        yield MaterializeResult(
            asset_key=view_key(view),
            metadata=metadata,
            check_results=results if view == "calls" else [],
        )


# ------------------------------------------------------------------------------------------
# mart/daily_kpis

DAY_CALLS = """
SELECT source, count(*) AS calls, count(answered_at) AS answered
FROM mart.calls WHERE NOT is_deleted AND started_at >= %(lo)s AND started_at < %(hi)s
GROUP BY source ORDER BY source
"""
DAY_PUSHES = """
SELECT count(*) AS deliveries, count(*) FILTER (WHERE result = 1) AS succeeded
FROM core.fact_push_log WHERE _gone_at IS NULL AND create_time >= %(lo)s AND create_time < %(hi)s
"""


def kpi_summary(calls: pd.DataFrame, deliveries: int, succeeded: int) -> pd.DataFrame:
    """One row per call source plus 'all calls' and 'pushes': count, successes and rate."""
    frame = calls.rename(columns={"calls": "count", "answered": "successes"})
    frame["measure"] = "calls: " + frame.pop("source")
    total = pd.DataFrame(
        [
            {
                "measure": "calls: all",
                "count": int(frame["count"].sum()),
                "successes": int(frame["successes"].sum()),
            },
            {"measure": "pushes", "count": deliveries, "successes": succeeded},
        ]
    )
    out = pd.concat([frame, total], ignore_index=True)[["measure", "count", "successes"]]
    out["rate"] = (out["successes"] / out["count"].where(out["count"] > 0)).round(4)
    return out


@asset(
    key=KPI_KEY,
    group_name=GROUP,
    kinds={"postgres", "pandas"},
    owners=OWNERS,
    deps=[view_key("calls"), view_key("push_delivery_daily")],
    partitions_def=reporting_daily,
    description="A reporting day's KPIs as metadata the UI plots across partitions: calls, answer rate, "
    "push deliveries and push success rate (and a per-source summary table). Writes no table.",
    freshness_policy=FreshnessPolicy.time_window(fail_window=timedelta(hours=30)),
)
def daily_kpis(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    window = context.partition_time_window
    bounds = {"lo": window.start, "hi": window.end}
    with warehouse.connect() as conn:
        cur = conn.execute(DAY_CALLS, bounds)
        calls = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description]).astype(
            {"calls": "int64", "answered": "int64"}
        )
        deliveries, succeeded = conn.execute(DAY_PUSHES, bounds).fetchone()
    summary = kpi_summary(calls, int(deliveries), int(succeeded))
    all_calls = summary.loc[summary["measure"] == "calls: all"].iloc[0]
    pushes = summary.loc[summary["measure"] == "pushes"].iloc[0]

    def rate(row: pd.Series) -> float:
        return float(row["rate"]) if pd.notna(row["rate"]) else 0.0

    return MaterializeResult(
        metadata={
            "day": context.partition_key,
            "calls": MetadataValue.int(int(all_calls["count"])),
            "answer_rate": MetadataValue.float(rate(all_calls)),
            "push_deliveries": MetadataValue.int(int(pushes["count"])),
            "push_success_rate": MetadataValue.float(rate(pushes)),
            "summary": MetadataValue.md(summary.to_markdown(index=False)),
        }
    )


ASSETS = [customer_identity, customer_key, mart_views, daily_kpis]
