"""The one Definitions object: every source folder's definitions and the analysts' mart
(``pipelines/mart/``), merged, plus what is shared (the warehouse resource and the
per-partition freshness sensor).

Each source folder's ``jobs.py`` exports ``defs`` (its assets, checks, jobs and schedules) and
``RESOURCE`` (its resource class, bound to the environment by ``from_env``). Adding a vendor is
adding its folder under ``pipelines/sources/`` and one line to ``SOURCES``.
"""

import os
import warnings
from types import ModuleType

from dagster import DefaultSensorStatus, Definitions, EnvVar, build_sensor_for_freshness_checks

from pipelines.alerts import build_alert_sensors
from pipelines.executors import executor_from_env
from pipelines.mart import jobs as mart
from pipelines.sources.crm import jobs as crm
from pipelines.sources.isales import jobs as isales
from pipelines.sources.pushlog import jobs as pushlog
from pipelines.sources.trtc import jobs as trtc
from pipelines.warehouse import WarehouseResource

SOURCES: list[ModuleType] = [crm, isales, pushlog, trtc]


def build_resources() -> dict[str, object]:
    """Every resource, bound to the environment as it is when called."""
    warehouse = WarehouseResource(url=EnvVar("WAREHOUSE_URL") if os.environ.get("WAREHOUSE_URL") else None)
    out: dict[str, object] = {"warehouse": warehouse}
    for source in SOURCES:
        out[source.RESOURCE.SOURCE] = source.RESOURCE.from_env()
    return {**out, **mart.resources()}


freshness_checks = [check for source in SOURCES for check in source.defs.asset_checks or ()]
with warnings.catch_warnings():
    # Kept on purpose (DESIGN.md): a backfill of an old partition makes a FreshnessPolicy look
    # fresh, so the time-partitioned facts also get per-partition checks, which need this sensor.
    warnings.simplefilter("ignore", FutureWarning)
    freshness_sensor = build_sensor_for_freshness_checks(
        freshness_checks=freshness_checks,
        name="freshness_checks_sensor",
        default_status=DefaultSensorStatus.RUNNING,
    )

defs = Definitions.merge(
    *(source.defs for source in SOURCES),
    mart.defs,  # downstream of every source's facts
    Definitions(
        # Alerts (ALERT_WEBHOOK_URL): failed runs, failed quality and freshness checks.
        sensors=[freshness_sensor, *build_alert_sensors([a for m in (*SOURCES, mart) for a in m.ASSETS])],
        resources=build_resources(),
        # DAGSTER_EXECUTOR: in_process (default), multiprocess or celery (pipelines/executors.py).
        executor=executor_from_env(),
    ),
)
