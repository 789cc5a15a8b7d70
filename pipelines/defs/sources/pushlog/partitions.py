"""The push-log partitions: calendar months in PUSHLOG_TIMEZONE (a request must not span two),
the open month included (``end_offset=1``) so schedules can refresh it. Keys are the first
day, YYYY-MM-DD."""

from dagster import MonthlyPartitionsDefinition

from pipelines.lib import settings

pushlog_monthly = MonthlyPartitionsDefinition(
    start_date=settings.start_date("pushlog"), timezone=settings.timezone("pushlog"), end_offset=1
)
