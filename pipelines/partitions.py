"""The partition definitions, one per cadence, each in its vendor's zone.

Every definition includes the open (current) window (``end_offset=1``), so schedules can
refresh it. Keys are the window's start date, YYYY-MM-DD.
"""

from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition, WeeklyPartitionsDefinition

from pipelines import settings

crm_daily = DailyPartitionsDefinition(
    start_date=settings.start_date("crm"), timezone=settings.timezone("crm"), end_offset=1
)
# day_offset=1: weeks run Monday to Monday.
isales_weekly = WeeklyPartitionsDefinition(
    start_date=settings.start_date("isales"), timezone=settings.timezone("isales"), day_offset=1, end_offset=1
)
trtc_weekly = WeeklyPartitionsDefinition(
    start_date=settings.start_date("trtc"), timezone=settings.timezone("trtc"), day_offset=1, end_offset=1
)
pushlog_monthly = MonthlyPartitionsDefinition(
    start_date=settings.start_date("pushlog"), timezone=settings.timezone("pushlog"), end_offset=1
)
