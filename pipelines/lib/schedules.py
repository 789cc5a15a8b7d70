"""Schedule shapes shared by every source."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Protocol

from dagster import (
    AssetChecksDefinition,
    AssetKey,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    TimeWindowPartitionsDefinition,
    build_time_partition_freshness_checks,
    schedule,
)

# The late-data pass runs on the ticks in the first minutes of an hour: one of a
# */15 schedule's four.
LATE_PASS_MINUTES = 15


class AssetJob(Protocol):
    """What ``define_asset_job`` returns (dagster exports no public name for its type)."""

    name: str


def recent_partitions_schedule(
    job: AssetJob,
    partitions_def: TimeWindowPartitionsDefinition,
    cron_schedule: str,
    lookback: int = 2,
    name: str | None = None,
) -> ScheduleDefinition:
    """Refresh the open partition on every tick, and the ``lookback - 1`` before it (the
    late-data pass: a complete pull of a closed window) on the first tick of each hour: the
    open window grows during the day and late records land in the previous one.

    A refresh of the open window costs what is new (``pipelines/lib/refresh.py``), so ticks
    can be frequent; the late-data pass pulls whole windows, so it stays hourly.
    ``build_schedule_from_partitioned_job`` targets one partition per tick, at the
    partition's own cadence; this needs several per tick, more often than that.
    """

    @schedule(
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone=partitions_def.timezone,
        name=name or f"{job.name}_schedule",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Refreshes the open partition on every tick and the {lookback - 1} before it hourly.",
    )
    def _schedule(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
        at = context.scheduled_execution_time
        keys = partitions_def.get_partition_keys(current_time=at)
        tick = at.isoformat() if at else "manual"
        recent = keys[-lookback:]
        for key in recent if at is None or at.minute < LATE_PASS_MINUTES else recent[-1:]:
            yield RunRequest(run_key=f"{key}@{tick}", partition_key=key)

    return _schedule


def partition_freshness_checks(
    assets: Sequence[AssetKey], deadline_cron: str, timezone: str
) -> Sequence[AssetChecksDefinition]:
    """Checks that the latest partition of each asset was materialized by ``deadline_cron``.

    Kept on purpose beside each asset's ``FreshnessPolicy`` (README.md, "Operating it"): a backfill of an old
    partition makes the policy look fresh, while these look at the latest partition itself.
    Dagster marks the builder superseded; its warning is silenced here, and only here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return build_time_partition_freshness_checks(
            assets=assets, deadline_cron=deadline_cron, timezone=timezone
        )
