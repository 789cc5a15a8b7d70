"""The CRM's partitions: one day in CRM_TIMEZONE, the open day included (``end_offset=1``)
so schedules can refresh it. Keys are the day, YYYY-MM-DD."""

from dagster import DailyPartitionsDefinition

from pipelines.lib import settings

crm_daily = DailyPartitionsDefinition(
    start_date=settings.start_date("crm"), timezone=settings.timezone("crm"), end_offset=1
)
