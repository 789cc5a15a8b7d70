"""The per-partition freshness checks of every source, run by a named job on a schedule.

Each source builds its checks with ``partition_freshness_checks`` (a backfill of an old
partition makes the asset-level ``FreshnessPolicy`` look fresh; these look at the latest
partition itself). Dagster's own sensor for them launches nameless ``__ASSET_JOB`` runs, so
an operator could not tell them apart in the runs list; here they run as ``freshness_checks``.
Hourly: every deadline is on the hour in its source's zone, so lateness shows within the hour.
"""

from __future__ import annotations

from collections.abc import Iterable

from dagster import (
    AssetCheckKey,
    AssetChecksDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    Definitions,
    ScheduleDefinition,
    define_asset_job,
)

JOB_NAME = "freshness_checks"
# What Dagster's freshness-check builder marks its checks with (their deadline and zone).
FRESHNESS_PARAMS = "dagster/freshness_params"


def freshness_check_keys(checks: Iterable[AssetChecksDefinition]) -> list[AssetCheckKey]:
    """The keys of the freshness checks among ``checks``."""
    return sorted(
        (
            spec.key
            for definition in checks
            for spec in definition.check_specs
            if FRESHNESS_PARAMS in (spec.metadata or {})
        ),
        key=lambda key: key.to_user_string(),
    )


def freshness_definitions(checks: Iterable[AssetChecksDefinition]) -> Definitions:
    """The ``freshness_checks`` job over the freshness checks among ``checks``, and its schedule."""
    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.checks(*freshness_check_keys(checks)),
        description="Whether each source's latest partition was loaded by its deadline.",
    )
    schedule = ScheduleDefinition(
        name=f"{JOB_NAME}_schedule",
        job=job,
        cron_schedule="55 * * * *",
        default_status=DefaultScheduleStatus.RUNNING,
    )
    return Definitions(jobs=[job], schedules=[schedule])
