"""The mart's assets (group ``mart``), downstream of the core facts:

- ``core/customer_identity``: the operator's identity map, from CUSTOMER_IDENTITY_FILE.
- ``core/customer_key``: every customer seen in the call facts, keyed (the one place the
  PII key is used; see ``pii``).
- ``mart/<view>``: the analysts' views. They are plain views (migration 0011), always as
  current as ``core``; materializing them writes the reporting zone they read, counts their
  rows and checks them (every call keyed and mapped, nothing that looks like a phone number).
- ``mart/daily_kpis``: one reporting day's calls, answer rate and push success rate as
  metadata, so the UI plots them over the partitions.
"""

import time
from datetime import timedelta

import pandas as pd
import psycopg
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    DailyPartitionsDefinition,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from psycopg import sql

from models import mart as mart_models
from pipelines.defs.mart import columns, identity, pii
from pipelines.lib import settings
from pipelines.lib.ingest import OWNERS
from pipelines.lib.schema import table_metadata
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


# What each view reads (mart.calls reads the facts; the KPI views over it read mart.calls).
VIEW_DEPS: dict[str, list[AssetKey]] = {
    "calls": [CRM_CALL, CRM_RECORDING, CRM_HANGUP, TRTC_CALL, CUSTOMER_KEY_KEY, IDENTITY_KEY],
    "call_daily": [view_key("calls")],
    "call_hourly": [view_key("calls")],
    "agent_daily": [view_key("calls")],
    "hangup_cause_daily": [view_key("calls")],
    "customers": [view_key("calls")],
    "push_delivery_daily": [PUSH_LOG],
    "push_deliveries": [PUSH_LOG],
    "api_usage_daily": [ISALES_CALL],
}
# The open windows refresh every 15 minutes; the mart job runs every 15 minutes after them:
# two missed runs warn, six fail.
FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(minutes=90), warn_window=timedelta(minutes=30))

# A phone number written alone or inside text: a mobile (optionally +86/0086/86) or a landline
# with its trunk 0, between characters that are not letters or digits (so a hex id's run of
# digits does not count). The vendors' own ids (source_call_id) are not scanned.
PHONE_LIKE = r"(^|[^0-9A-Za-z])(\+?86|0086)?(1[3-9][0-9]{9}|0[1-9][0-9]{8,10})($|[^0-9A-Za-z])"
NOT_SCANNED = {("calls", "source_call_id")}


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

# Every customer mart.calls names: CRM numbers and TRTC callers (through the identity map),
# with the expressions mart.calls joins on (core.app_user_subject is its TRTC one, written out).
SUBJECTS = """
SELECT core.normalize_phone(customer_number) AS subject FROM core.fact_crm_call
UNION
SELECT core.app_user_subject(t.caller, ci.phone_number) FROM core.fact_trtc_call t
LEFT JOIN core.customer_identity ci ON ci.app_user_id = t.caller
"""
# Only subjects not yet keyed under this key are hashed; rows of another key are rewritten.
UPSERT = f"""
WITH s AS ({SUBJECTS})
INSERT INTO core.customer_key AS k (subject, customer_key, last4, key_id, _loaded_at)
SELECT s.subject, {pii.CUSTOMER_KEY_SQL.format(subject="s.subject")},
       CASE WHEN s.subject LIKE '+%%' THEN right(s.subject, 4) END, %(key_id)s, now()
FROM s
WHERE s.subject IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM core.customer_key o WHERE o.subject = s.subject AND o.key_id = %(key_id)s)
ON CONFLICT (subject) DO UPDATE
SET customer_key = EXCLUDED.customer_key, last4 = EXCLUDED.last4, key_id = EXCLUDED.key_id,
    _loaded_at = EXCLUDED._loaded_at
"""


@asset(
    key=CUSTOMER_KEY_KEY,
    group_name=GROUP,
    kinds=KINDS,
    owners=OWNERS,
    deps=[CRM_CALL, TRTC_CALL, IDENTITY_KEY],
    description="Every customer of mart.calls (CRM numbers; TRTC callers, through the identity map), with "
    "their customer_key: HMAC-SHA256 of the normalized number (or 'app:<user id>') under PII_HASH_KEY, computed in PostgreSQL with the key as a bound parameter; the key is never stored. "
    "Only new customers are hashed; a new key rewrites every row.",
    metadata=table_metadata(mart_models.customer_key),
    freshness_policy=FRESHNESS,
)
def customer_key(warehouse: WarehouseResource, customers: pii.CustomersResource) -> MaterializeResult:
    started = time.monotonic()
    with warehouse.connect() as conn:
        key, source = customers.key(customers.is_demo(conn))
        params = {**pii.pads(key), "key_id": pii.key_id(key)}
        keyed = conn.execute(UPSERT, params).rowcount
        # Subjects no longer in any fact keep their key; keys of an older key go.
        stale = conn.execute("DELETE FROM core.customer_key WHERE key_id <> %(key_id)s", params).rowcount
        rows, phones = conn.execute("SELECT count(*), count(last4) FROM core.customer_key").fetchone()
    return MaterializeResult(
        metadata={
            "key": source,
            "keyed_now": int(keyed),
            "removed_other_key": int(stale),
            "dagster/row_count": MetadataValue.int(int(rows)),
            "phone_numbers": int(phones),
            "app_user_ids": int(rows - phones),
            "elapsed_s": round(time.monotonic() - started, 3),
        }
    )


# ------------------------------------------------------------------------------------------
# mart views

CHECK_DESCRIPTIONS = {
    "customers_keyed": "Every call with a customer number or caller has its customer_key (core/customer_key "
    "ran after the facts).",
    "codes_mapped": "Every call's source codes are in the mart.map_* tables (no NULL direction, no 'other' "
    "outcome from an unlisted code); lists the unlisted codes.",
    "no_phone_numbers": "No text in any mart view or table looks like a phone number (source_call_id, the "
    "vendors' own ids, aside).",
}


def _timezone() -> str:
    return settings.timezone("reporting")


def _write_timezone(conn: psycopg.Connection, tz: str) -> None:
    conn.execute("UPDATE mart.settings SET value = %s WHERE name = 'reporting_timezone'", (tz,))


def _customers_keyed(conn: psycopg.Connection) -> AssetCheckResult:
    crm, trtc = conn.execute(
        """
        SELECT (SELECT count(*) FROM core.fact_crm_call c
                WHERE core.normalize_phone(c.customer_number) IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM core.customer_key k
                                  WHERE k.subject = core.normalize_phone(c.customer_number))),
               (SELECT count(*) FROM core.fact_trtc_call t
                LEFT JOIN core.customer_identity ci ON ci.app_user_id = t.caller
                WHERE t.caller IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM core.customer_key k
                                  WHERE k.subject = core.app_user_subject(t.caller, ci.phone_number)))
        """
    ).fetchone()
    return AssetCheckResult(
        asset_key=view_key("calls"),
        check_name="customers_keyed",
        passed=crm + trtc == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"crm_calls_unkeyed": int(crm), "trtc_calls_unkeyed": int(trtc)},
    )


def _codes_mapped(conn: psycopg.Connection) -> AssetCheckResult:
    rows = conn.execute(
        """
        SELECT 'crm call_type', c.call_type::text, count(*) FROM core.fact_crm_call c
        WHERE c.call_type IS NULL OR c.call_type NOT IN (SELECT call_type FROM mart.map_crm_direction) GROUP BY 2
        UNION ALL
        SELECT 'crm result', c.result::text, count(*) FROM core.fact_crm_call c
        WHERE c.result IS NULL OR c.result NOT IN (SELECT result FROM mart.map_crm_outcome) GROUP BY 2
        UNION ALL
        SELECT 'trtc call_type', t.call_type, count(*) FROM core.fact_trtc_call t
        WHERE t.call_type IS NULL OR t.call_type NOT IN (SELECT call_type FROM mart.map_trtc_direction) GROUP BY 2
        UNION ALL
        SELECT 'trtc call_result', t.call_result, count(*) FROM core.fact_trtc_call t
        WHERE t.call_result IS NULL OR t.call_result NOT IN (SELECT call_result FROM mart.map_trtc_outcome)
        GROUP BY 2
        ORDER BY 1, 2
        """
    ).fetchall()
    unlisted = {f"{field}={code if code is not None else 'NULL'}": int(n) for field, code, n in rows}
    return AssetCheckResult(
        asset_key=view_key("calls"),
        check_name="codes_mapped",
        passed=not unlisted,
        severity=AssetCheckSeverity.WARN,
        metadata={"unlisted_codes": MetadataValue.json(unlisted), "calls_affected": sum(unlisted.values())},
    )


def phone_like_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Per mart relation, the rows with a text value that looks like a phone number."""
    columns_by_relation: dict[str, list[str]] = {}
    for relation, column in conn.execute(
        """
        SELECT c.relname, a.attname FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'mart' AND c.relkind IN ('r', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid IN ('text'::regtype, 'varchar'::regtype, 'jsonb'::regtype, 'text[]'::regtype)
        ORDER BY 1, a.attnum
        """
    ).fetchall():
        if (relation, column) not in NOT_SCANNED:
            columns_by_relation.setdefault(relation, []).append(column)
    out: dict[str, int] = {}
    for relation, cols in columns_by_relation.items():
        matches = sql.SQL(" OR ").join(
            sql.SQL("{}::text ~ %(re)s").format(sql.Identifier(col)) for col in cols
        )
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(sql.Identifier("mart", relation), matches)
        out[relation] = int(conn.execute(query, {"re": PHONE_LIKE}).fetchone()[0])
    return out


def _no_phone_numbers(conn: psycopg.Connection) -> AssetCheckResult:
    counts = phone_like_counts(conn)
    return AssetCheckResult(
        asset_key=view_key("calls"),
        check_name="no_phone_numbers",
        passed=not any(counts.values()),
        severity=AssetCheckSeverity.ERROR,
        metadata={"rows_with_phone_like_text": MetadataValue.json(counts)},
    )


@multi_asset(
    name="mart_views",
    specs=[
        AssetSpec(
            view_key(view),
            group_name=GROUP,
            kinds=KINDS,
            owners=OWNERS,
            deps=deps,
            description=f"mart.{view} (a view): {columns.description(view)}",
            metadata={
                "dagster/column_schema": columns.schema(view),
                "dagster/table_name": f"mart.{view}",
            },
            freshness_policy=FRESHNESS,
        )
        for view, deps in VIEW_DEPS.items()
    ],
    check_specs=[
        AssetCheckSpec(name, asset=view_key("calls"), description=text)
        for name, text in CHECK_DESCRIPTIONS.items()
    ],
)
def mart_views(context: AssetExecutionContext, warehouse: WarehouseResource):  # noqa: ANN201
    tz = _timezone()
    with warehouse.connect() as conn:
        _write_timezone(conn, tz)
        conn.commit()
        checks = [_customers_keyed(conn), _codes_mapped(conn), _no_phone_numbers(conn)]
        for view in VIEW_DEPS:
            started = time.monotonic()
            rows = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("mart", view))
            ).fetchone()[0]
            yield MaterializeResult(
                asset_key=view_key(view),
                metadata={
                    "dagster/row_count": MetadataValue.int(int(rows)),
                    "reporting_timezone": tz,
                    "query_s": round(time.monotonic() - started, 3),
                },
                check_results=[c for c in checks if view == "calls"],
            )


# ------------------------------------------------------------------------------------------
# mart/daily_kpis

reporting_daily = DailyPartitionsDefinition(
    start_date=settings.start_date("mart"), timezone=_timezone(), end_offset=1
)

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
