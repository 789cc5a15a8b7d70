"""The trtc partitions: Monday-to-Monday weeks in TRTC_TIMEZONE (``day_offset=1``), the open
week included (``end_offset=1``) so schedules can refresh it. Keys are the Monday, YYYY-MM-DD."""

from dagster import WeeklyPartitionsDefinition

from pipelines.lib import settings

trtc_weekly = WeeklyPartitionsDefinition(
    start_date=settings.start_date("trtc"), timezone=settings.timezone("trtc"), day_offset=1, end_offset=1
)
