"""Schedule shapes shared by every source."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    TimeWindowPartitionsDefinition,
    schedule,
)

if TYPE_CHECKING:  # not exported by dagster; only the type is needed
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition


def recent_partitions_schedule(
    job: UnresolvedAssetJobDefinition,
    partitions_def: TimeWindowPartitionsDefinition,
    cron_schedule: str,
    lookback: int = 2,
    name: str | None = None,
) -> ScheduleDefinition:
    """Refresh the open partition and the ``lookback - 1`` before it on every tick: the open
    window grows during the day and late records land in the previous one.

    ``build_schedule_from_partitioned_job`` targets one partition per tick, at the
    partition's own cadence; this needs several per tick, more often than that.
    """

    @schedule(
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone=partitions_def.timezone,
        name=name or f"{job.name}_schedule",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Refreshes the open partition and the {lookback - 1} before it.",
    )
    def _schedule(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
        keys = partitions_def.get_partition_keys(current_time=context.scheduled_execution_time)
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
        for key in keys[-lookback:]:
            yield RunRequest(run_key=f"{key}@{tick}", partition_key=key)

    return _schedule
