"""Everything Dagster needs of the Huawei CC-iSales source: its resource (bound to the environment),
assets, checks, jobs and schedules. ``pipelines/definitions.py`` merges every source's."""

import os

from dagster import Definitions, EnvVar

from pipelines import settings
from pipelines.sources.isales.client import ISalesResource
from pipelines.sources.isales.jobs import ASSETS, FRESHNESS_CHECKS, JOBS, SCHEDULES


def resources() -> dict[str, ISalesResource]:
    """The source's resource, its secrets through ``EnvVar`` (resolved at run time, never
    shown); read when called, so a test's environment applies."""
    return {
        "isales": ISalesResource(
            base_url=EnvVar("ISALES_BASE_URL"),
            ak=EnvVar("ISALES_AK"),
            sk=EnvVar("ISALES_SK"),
            vdn_ids=os.environ.get("ISALES_VDN_IDS", ""),
            timezone=settings.timezone("isales"),
            sign_variant=os.environ.get("ISALES_SIGN_VARIANT") or "hex",
            rate_per_s=settings.rate("isales", 20.0),
            **settings.overrides("isales"),
        )
    }


defs = Definitions(assets=ASSETS, asset_checks=FRESHNESS_CHECKS, jobs=JOBS, schedules=SCHEDULES)
