"""The one Definitions object: assets, checks, schedules, sensors and resources."""

from dagster import Definitions, build_sensor_for_freshness_checks

from pipelines.mart import jobs as mart_jobs
from pipelines.resources import build_resources
from pipelines.sources.crm import jobs as crm_jobs
from pipelines.sources.isales import jobs as isales_jobs
from pipelines.sources.pushlog import jobs as pushlog_jobs
from pipelines.sources.trtc import jobs as trtc_jobs

# Each source exports ASSETS, JOBS, SCHEDULES and FRESHNESS_CHECKS from its jobs module.
SOURCES = [crm_jobs, isales_jobs, pushlog_jobs, trtc_jobs]

freshness_checks = [check for source in SOURCES for check in source.FRESHNESS_CHECKS]

defs = Definitions(
    assets=[asset for source in SOURCES for asset in source.ASSETS],
    asset_checks=freshness_checks,
    jobs=[job for source in SOURCES for job in source.JOBS],
    schedules=[schedule for source in SOURCES for schedule in source.SCHEDULES],
    sensors=[
        build_sensor_for_freshness_checks(freshness_checks=freshness_checks, name="freshness_checks_sensor")
    ],
    resources=build_resources(),
)

# The analysts' mart (pipelines/mart/): downstream of every source's facts.
defs = Definitions.merge(
    defs,
    Definitions(
        assets=mart_jobs.ASSETS,
        jobs=mart_jobs.JOBS,
        schedules=mart_jobs.SCHEDULES,
        resources=mart_jobs.RESOURCES,
    ),
)
