"""``mart/<table>``: the KPI tables and ``mart.customers``, one partition per reporting day.

A run writes each of its days in its own transaction (``days.write_day``): delete the day's
rows of every table, insert them again from ``core``, and write the customers who called that
day again. Runs come from the ``mart_days`` sensor (the days the hourly job found touched,
one run per stretch of consecutive days) or from a backfill (a full rebuild: every partition
in one run, ``BackfillPolicy.single_run``). Each table checks that no text among the rows the
run wrote looks like a phone number.
"""

import time
from collections import Counter
from datetime import date

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)
from psycopg import sql

from models import mart_kpi
from pipelines.defs.mart import checks, days
from pipelines.defs.mart.assets import (
    GROUP,
    KINDS,
    TABLE_DEPS,
    reporting_daily,
    reporting_timezone,
    view_key,
    write_timezone,
)
from pipelines.lib.ingest import OWNERS
from pipelines.lib.schema import schema_from_comments, table_metadata
from pipelines.lib.warehouse import WarehouseResource

# The rows of the day being written, per table (customers: those who called that day).
DAY_SCOPES = {
    **{table: sql.SQL("day = %(day)s") for table in days.DAY_TABLES},
    "customers": sql.SQL(
        "customer_key IN (SELECT k.customer_key FROM core.customer_key k "
        "WHERE k.subject IN (SELECT subject FROM pg_temp.mart_touched))"
    ),
}


@multi_asset(
    name="mart_tables",
    specs=[
        AssetSpec(
            view_key(table),
            group_name=GROUP,
            kinds=KINDS,
            owners=OWNERS,
            deps=TABLE_DEPS[table],
            description=f"{getattr(mart_kpi, table).comment} A table kept by reporting day "
            "(sql/mart/days/; mart.customers from core.customer_day).",
            metadata=table_metadata(getattr(mart_kpi, table)),
        )
        for table in days.TABLES
    ],
    check_specs=[
        AssetCheckSpec(
            "no_phone_numbers",
            asset=view_key(table),
            description="No text among the rows this run wrote looks like a phone number.",
        )
        for table in days.TABLES
    ],
    partitions_def=reporting_daily,
    backfill_policy=BackfillPolicy.single_run(),
)
def mart_tables(context: AssetExecutionContext, warehouse: WarehouseResource):  # noqa: ANN201
    tz = reporting_timezone()
    written: Counter = Counter({table: 0 for table in days.TABLES})
    phone_like: Counter = Counter({table: 0 for table in days.TABLES})
    started = time.monotonic()
    keys = context.partition_keys
    with warehouse.connect() as conn:
        write_timezone(conn, tz)
        for key in keys:
            window = reporting_daily.time_window_for_partition_key(key)
            day = date.fromisoformat(key)
            written.update(days.write_day(conn, day, window.start, window.end, tz))
            phone_like.update(checks.phone_like_counts(conn, DAY_SCOPES, {"day": day}))
            conn.commit()
        schemas = {table: schema_from_comments(conn, f"mart.{table}") for table in days.TABLES}
    elapsed = round(time.monotonic() - started, 3)
    for table in days.TABLES:
        yield MaterializeResult(
            asset_key=view_key(table),
            metadata={
                "days": len(keys),
                "first_day": keys[0],
                "last_day": keys[-1],
                "rows_written": MetadataValue.int(written[table]),
                "reporting_timezone": tz,
                "dagster/column_schema": schemas[table],
                "elapsed_s": elapsed,
            },
            check_results=[
                checks.no_phone_numbers(
                    view_key(table), {table: phone_like[table]}, f"the rows of {len(keys)} days written"
                )
            ],
        )
