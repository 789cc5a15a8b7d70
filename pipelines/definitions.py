"""The one Definitions object: assets, checks, schedules, sensors and resources."""

from dagster import DefaultSensorStatus, Definitions, build_sensor_for_freshness_checks

from pipelines.alerts import build_alert_sensors
from pipelines.executors import executor_from_env
from pipelines.resources import build_resources
from pipelines.sources.crm import jobs as crm_jobs
from pipelines.sources.isales import jobs as isales_jobs
from pipelines.sources.pushlog import jobs as pushlog_jobs
from pipelines.sources.trtc import jobs as trtc_jobs

# Each source exports ASSETS, JOBS, SCHEDULES and FRESHNESS_CHECKS from its jobs module.
SOURCES = [crm_jobs, isales_jobs, pushlog_jobs, trtc_jobs]

freshness_checks = [check for source in SOURCES for check in source.FRESHNESS_CHECKS]
assets = [asset for source in SOURCES for asset in source.ASSETS]

defs = Definitions(
    assets=assets,
    asset_checks=freshness_checks,
    jobs=[job for source in SOURCES for job in source.JOBS],
    schedules=[schedule for source in SOURCES for schedule in source.SCHEDULES],
    sensors=[
        build_sensor_for_freshness_checks(
            freshness_checks=freshness_checks,
            name="freshness_checks_sensor",
            default_status=DefaultSensorStatus.RUNNING,
        ),
        # Alerts (ALERT_WEBHOOK_URL): failed runs, failed quality and freshness checks.
        *build_alert_sensors(assets),
    ],
    resources=build_resources(),
    # DAGSTER_EXECUTOR: in_process (default), multiprocess or celery (pipelines/executors.py).
    executor=executor_from_env(),
)
