"""Everything Dagster needs of the Alibaba Cloud push-log source: its resource (bound to the environment),
assets, checks, jobs and schedules. ``pipelines/definitions.py`` merges every source's."""

from dagster import Definitions, EnvVar

from pipelines import settings
from pipelines.sources.pushlog.client import PushLogResource
from pipelines.sources.pushlog.jobs import ASSETS, FRESHNESS_CHECKS, JOBS, SCHEDULES


def resources() -> dict[str, PushLogResource]:
    """The source's resource, its secrets through ``EnvVar`` (resolved at run time, never
    shown); read when called, so a test's environment applies."""
    return {
        "pushlog": PushLogResource(
            base_url=EnvVar("PUSHLOG_BASE_URL"),
            access_key_id=EnvVar("PUSHLOG_ACCESS_KEY_ID"),
            access_key_secret=EnvVar("PUSHLOG_ACCESS_KEY_SECRET"),
            enterprise_id=EnvVar("PUSHLOG_ENTERPRISE_ID"),
            rate_per_s=settings.rate("pushlog", 20.0),
            **settings.overrides("pushlog"),
        )
    }


defs = Definitions(assets=ASSETS, asset_checks=FRESHNESS_CHECKS, jobs=JOBS, schedules=SCHEDULES)
