"""Everything Dagster needs of the Udesk CRM source: its resource (bound to the environment),
assets, checks, jobs and schedules. ``pipelines/definitions.py`` merges every source's."""

import os

from dagster import Definitions, EnvVar

from pipelines import settings
from pipelines.sources.crm.client import CrmResource
from pipelines.sources.crm.jobs import ASSETS, FRESHNESS_CHECKS, JOBS, SCHEDULES


def resources() -> dict[str, CrmResource]:
    """The source's resource, its secrets through ``EnvVar`` (resolved at run time, never
    shown); read when called, so a test's environment applies."""
    return {
        "crm": CrmResource(
            base_url=EnvVar("CRM_BASE_URL"),
            email=EnvVar("CRM_EMAIL"),
            secret_key=EnvVar("CRM_SECRET_KEY"),
            agent_ids=os.environ.get("CRM_AGENT_IDS", ""),
            rate_per_s=settings.rate("crm", 20.0),
            **settings.overrides("crm"),
        )
    }


defs = Definitions(assets=ASSETS, asset_checks=FRESHNESS_CHECKS, jobs=JOBS, schedules=SCHEDULES)
