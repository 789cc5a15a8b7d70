"""The per-partition freshness checks of every source, run by a named job when they are due.

Each source builds its checks with ``partition_freshness_checks`` (a backfill of an old
partition makes the asset-level ``FreshnessPolicy`` look fresh; these look at the latest
partition itself). They run with every materialization of their assets; between those, a
sensor runs them once their deadline has passed. Dagster's own sensor for them launches
nameless ``__ASSET_JOB`` runs, which an operator cannot tell apart in the runs list: here it
only decides which checks are due, and they run as the job ``freshness_checks``.

A sensor rather than a schedule: a tick (every 30 s) is a few reads of the event log, and a
run starts only when a check is due (a passing check names its next deadline, a day to a
month away), so a missed deadline shows within a minute, at about one run per deadline. An
hourly schedule would start 24 runs a day to find nothing due, and see a miss up to an hour
late.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from dagster import (
    AssetCheckKey,
    AssetChecksDefinition,
    AssetSelection,
    DefaultSensorStatus,
    Definitions,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    build_sensor_for_freshness_checks,
    define_asset_job,
    sensor,
)

JOB_NAME = "freshness_checks"
SENSOR_NAME = "freshness_checks_sensor"
# What Dagster's freshness-check builder marks its checks with (their deadline and zone).
FRESHNESS_PARAMS = "dagster/freshness_params"


def _freshness_checks(checks: Iterable[AssetChecksDefinition]) -> list[AssetChecksDefinition]:
    return [c for c in checks if all(FRESHNESS_PARAMS in (s.metadata or {}) for s in c.check_specs)]


def freshness_check_keys(checks: Iterable[AssetChecksDefinition]) -> list[AssetCheckKey]:
    """The keys of the freshness checks among ``checks``."""
    keys = (spec.key for definition in _freshness_checks(checks) for spec in definition.check_specs)
    return sorted(keys, key=lambda key: key.to_user_string())


def freshness_definitions(checks: Iterable[AssetChecksDefinition]) -> Definitions:
    """The ``freshness_checks`` job over the freshness checks among ``checks``, and the sensor
    that runs the ones due."""
    freshness = _freshness_checks(checks)
    job = define_asset_job(
        JOB_NAME,
        selection=AssetSelection.checks(*freshness),
        description="Whether each source's latest partition was loaded by its deadline.",
    )
    with warnings.catch_warnings():
        # Superseded by FreshnessPolicy, like the checks' builder: kept on purpose (above).
        warnings.simplefilter("ignore", FutureWarning)
        due = build_sensor_for_freshness_checks(freshness_checks=freshness, name=SENSOR_NAME)

    @sensor(
        job=job,
        name=SENSOR_NAME,
        default_status=DefaultSensorStatus.RUNNING,
        description="Runs the freshness checks that are due (never run, past the deadline their last "
        "pass named, or failed and materialized since) in the freshness_checks job.",
    )
    def _sensor(context: SensorEvaluationContext) -> RunRequest | SkipReason:
        # Dagster's sensor, asked under the same name: it recognizes its in-flight runs by the
        # sensor-name tag these runs carry. Its request, re-aimed at the named job.
        result = due(context)
        if isinstance(result, RunRequest):
            return RunRequest(asset_check_keys=result.asset_check_keys, tags=result.tags)
        return result

    return Definitions(jobs=[job], sensors=[_sensor])
