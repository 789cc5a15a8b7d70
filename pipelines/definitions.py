"""The one Definitions object: assets, checks, schedules, sensors and resources."""

from dagster import Definitions, build_sensor_for_freshness_checks

from pipelines.resources import build_resources
from pipelines.sources.crm import assets as crm_assets
from pipelines.sources.crm import jobs as crm_jobs

freshness_checks = [*crm_jobs.FRESHNESS_CHECKS]

defs = Definitions(
    assets=[*crm_assets.ASSETS],
    asset_checks=freshness_checks,
    jobs=[*crm_jobs.JOBS],
    schedules=[*crm_jobs.SCHEDULES],
    sensors=[
        build_sensor_for_freshness_checks(freshness_checks=freshness_checks, name="freshness_checks_sensor")
    ],
    resources=build_resources(),
)
