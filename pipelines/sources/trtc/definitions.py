"""Everything Dagster needs of the Tencent TRTC source: its resource (bound to the environment),
assets, checks, jobs and schedules. ``pipelines/definitions.py`` merges every source's."""

from dagster import Definitions, EnvVar

from pipelines import settings
from pipelines.sources.trtc.client import DEFAULT_RATE_PER_S, TrtcResource
from pipelines.sources.trtc.jobs import ASSETS, FRESHNESS_CHECKS, JOBS, SCHEDULES


def resources() -> dict[str, TrtcResource]:
    """The source's resource, its secrets through ``EnvVar`` (resolved at run time, never
    shown); read when called, so a test's environment applies."""
    return {
        "trtc": TrtcResource(
            base_url=EnvVar("TRTC_BASE_URL"),
            sdkappid=EnvVar("TRTC_SDKAPPID"),
            secret_key=EnvVar("TRTC_SECRET_KEY"),
            admin_identifier=EnvVar("TRTC_ADMIN_IDENTIFIER"),
            rate_per_s=settings.rate("trtc", DEFAULT_RATE_PER_S),
            **settings.overrides("trtc"),
        )
    }


defs = Definitions(assets=ASSETS, asset_checks=FRESHNESS_CHECKS, jobs=JOBS, schedules=SCHEDULES)
