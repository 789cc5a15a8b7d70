"""The mart's checks, each over a scope: the hourly job checks what loads changed since its
watermark (and the day partitions what they wrote); the weekly job checks everything.

- ``customers_keyed``: every call with a customer number or caller has its customer_key;
- ``codes_mapped``: every call's source codes are in the ``mart.map_*`` tables (a code missing
  from a mapping table is listed, with its calls, never an error);
- ``no_phone_numbers``: no text in ``mart`` looks like a phone number.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import psycopg
from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey, MetadataValue
from psycopg import sql

DESCRIPTIONS = {
    "customers_keyed": "Every call with a customer number or caller has its customer_key (core/customer_key "
    "ran after the facts). Hourly: the calls loaded since the last run; weekly (mart_full_scan): all.",
    "codes_mapped": "Every call's source codes are in the mart.map_* tables (no NULL direction, no 'other' "
    "outcome from an unlisted code); lists the unlisted codes. Hourly: the calls loaded since the last run; "
    "weekly (mart_full_scan): all.",
    "no_phone_numbers": "No text in the mart looks like a phone number (source_call_id, the vendors' own ids, "
    "aside). Hourly: the rows of the days loads touched; weekly (mart_full_scan): every row of every relation.",
}

# A phone number written alone or inside text: a mobile (optionally +86/0086/86) or a landline
# with its trunk 0, between characters that are not letters or digits (so a hex id's run of
# digits does not count). The vendors' own ids (source_call_id) are not scanned.
PHONE_LIKE = r"(^|[^0-9A-Za-z])(\+?86|0086)?(1[3-9][0-9]{9}|0[1-9][0-9]{8,10})($|[^0-9A-Za-z])"
NOT_SCANNED = {("calls", "source_call_id")}

UNKEYED = """
SELECT (SELECT count(*) FROM core.fact_crm_call c
        WHERE c._loaded_at > %(since)s AND core.normalize_phone(c.customer_number) IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM core.customer_key k
                          WHERE k.subject = core.normalize_phone(c.customer_number))),
       (SELECT count(*) FROM core.fact_trtc_call t
        LEFT JOIN core.customer_identity ci ON ci.app_user_id = t.caller
        WHERE t._loaded_at > %(since)s AND t.caller IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM core.customer_key k
                          WHERE k.subject = core.app_user_subject(t.caller, ci.phone_number)))
"""
UNLISTED = """
WITH c AS (SELECT call_type, result FROM core.fact_crm_call WHERE _loaded_at > %(since)s),
     t AS (SELECT call_type, call_result FROM core.fact_trtc_call WHERE _loaded_at > %(since)s)
SELECT 'crm call_type', c.call_type::text, count(*) FROM c
WHERE c.call_type IS NULL OR c.call_type NOT IN (SELECT call_type FROM mart.map_crm_direction) GROUP BY 2
UNION ALL
SELECT 'crm result', c.result::text, count(*) FROM c
WHERE c.result IS NULL OR c.result NOT IN (SELECT result FROM mart.map_crm_outcome) GROUP BY 2
UNION ALL
SELECT 'trtc call_type', t.call_type, count(*) FROM t
WHERE t.call_type IS NULL OR t.call_type NOT IN (SELECT call_type FROM mart.map_trtc_direction) GROUP BY 2
UNION ALL
SELECT 'trtc call_result', t.call_result, count(*) FROM t
WHERE t.call_result IS NULL OR t.call_result NOT IN (SELECT call_result FROM mart.map_trtc_outcome)
GROUP BY 2
ORDER BY 1, 2
"""


def customers_keyed(conn: psycopg.Connection, key: AssetKey, since: datetime) -> AssetCheckResult:
    crm, trtc = conn.execute(UNKEYED, {"since": since}).fetchone()
    return AssetCheckResult(
        asset_key=key,
        check_name="customers_keyed",
        passed=crm + trtc == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={"crm_calls_unkeyed": int(crm), "trtc_calls_unkeyed": int(trtc)},
    )


def codes_mapped(conn: psycopg.Connection, key: AssetKey, since: datetime) -> AssetCheckResult:
    rows = conn.execute(UNLISTED, {"since": since}).fetchall()
    unlisted = {f"{field}={code if code is not None else 'NULL'}": int(n) for field, code, n in rows}
    return AssetCheckResult(
        asset_key=key,
        check_name="codes_mapped",
        passed=not unlisted,
        severity=AssetCheckSeverity.WARN,
        metadata={"unlisted_codes": MetadataValue.json(unlisted), "calls_affected": sum(unlisted.values())},
    )


def phone_like_counts(
    conn: psycopg.Connection,
    scopes: Mapping[str, sql.Composable] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Per mart relation, the rows with a text value that looks like a phone number: every
    relation and row, or only the relations in ``scopes``, each over the rows its WHERE
    clause (bound to ``params``) selects."""
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
        if (relation, column) not in NOT_SCANNED and (scopes is None or relation in scopes):
            columns_by_relation.setdefault(relation, []).append(column)
    out: dict[str, int] = {}
    for relation, cols in columns_by_relation.items():
        matches = sql.SQL(" OR ").join(
            sql.SQL("{}::text ~ %(re)s").format(sql.Identifier(col)) for col in cols
        )
        where = scopes[relation] if scopes is not None else sql.SQL("TRUE")
        query = sql.SQL("SELECT count(*) FROM {} WHERE ({}) AND ({})").format(
            sql.Identifier("mart", relation), where, matches
        )
        out[relation] = int(conn.execute(query, {**(params or {}), "re": PHONE_LIKE}).fetchone()[0])
    return out


def no_phone_numbers(key: AssetKey, counts: Mapping[str, int], scope: str) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=key,
        check_name="no_phone_numbers",
        passed=not any(counts.values()),
        severity=AssetCheckSeverity.ERROR,
        metadata={"rows_with_phone_like_text": MetadataValue.json(dict(counts)), "scope": scope},
    )
