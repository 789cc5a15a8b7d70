"""The resources of the Definitions, bound to the environment (DESIGN.md's contract).

Secrets go through ``EnvVar`` so Dagster resolves them at run time and never shows their
values in the UI; a missing variable fails the first run with a message naming it.
"""

from __future__ import annotations

import os

from dagster import EnvVar

from pipelines import settings
from pipelines.settings import SettingError
from pipelines.sources.crm.client import CrmResource
from pipelines.sources.isales.client import ISalesResource
from pipelines.sources.pushlog.client import PushLogResource
from pipelines.sources.trtc.client import DEFAULT_RATE_PER_S as TRTC_RATE_PER_S
from pipelines.sources.trtc.client import TrtcResource
from pipelines.warehouse import WarehouseResource


def rate(source: str, default: float) -> float:
    """``<SOURCE>_RATE_PER_S`` overrides a client's request-rate limit (not a secret)."""
    value = os.environ.get(f"{source.upper()}_RATE_PER_S")
    return float(value) if value else default


def concurrency(source: str) -> dict[str, int]:
    """``<SOURCE>_CONCURRENCY`` overrides how many requests a client keeps in flight; unset,
    the resource's own default applies."""
    value = os.environ.get(f"{source.upper()}_CONCURRENCY")
    return {"concurrency": int(value)} if value else {}


def gone_share(source: str) -> dict[str, float]:
    """``<SOURCE>_MAX_GONE_SHARE`` (0 to 1) overrides the share of a window's rows one
    complete pull may mark gone; unset, the resource's default (0.2) applies."""
    name = f"{source.upper()}_MAX_GONE_SHARE"
    value = os.environ.get(name)
    if not value:
        return {}
    try:
        share = float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share <= 1.0:
        raise SettingError(f"{name}={value!r} is not a share between 0 and 1 (e.g. 0.2)")
    return {"max_gone_share": share}


def build_resources() -> dict[str, object]:
    return {
        "warehouse": WarehouseResource(
            url=EnvVar("WAREHOUSE_URL") if os.environ.get("WAREHOUSE_URL") else None
        ),
        "crm": CrmResource(
            base_url=EnvVar("CRM_BASE_URL"),
            email=EnvVar("CRM_EMAIL"),
            secret_key=EnvVar("CRM_SECRET_KEY"),
            agent_ids=os.environ.get("CRM_AGENT_IDS", ""),
            rate_per_s=rate("crm", 20.0),
            **concurrency("crm"),
            **gone_share("crm"),
        ),
        "isales": ISalesResource(
            base_url=EnvVar("ISALES_BASE_URL"),
            ak=EnvVar("ISALES_AK"),
            sk=EnvVar("ISALES_SK"),
            vdn_ids=os.environ.get("ISALES_VDN_IDS", ""),
            timezone=settings.timezone("isales"),
            sign_variant=os.environ.get("ISALES_SIGN_VARIANT") or "hex",
            rate_per_s=rate("isales", 20.0),
            **concurrency("isales"),
            **gone_share("isales"),
        ),
        "pushlog": PushLogResource(
            base_url=EnvVar("PUSHLOG_BASE_URL"),
            access_key_id=EnvVar("PUSHLOG_ACCESS_KEY_ID"),
            access_key_secret=EnvVar("PUSHLOG_ACCESS_KEY_SECRET"),
            enterprise_id=EnvVar("PUSHLOG_ENTERPRISE_ID"),
            rate_per_s=rate("pushlog", 20.0),
            **concurrency("pushlog"),
            **gone_share("pushlog"),
        ),
        "trtc": TrtcResource(
            base_url=EnvVar("TRTC_BASE_URL"),
            sdkappid=EnvVar("TRTC_SDKAPPID"),
            secret_key=EnvVar("TRTC_SECRET_KEY"),
            admin_identifier=EnvVar("TRTC_ADMIN_IDENTIFIER"),
            rate_per_s=rate("trtc", TRTC_RATE_PER_S),
            **concurrency("trtc"),
            **gone_share("trtc"),
        ),
    }
