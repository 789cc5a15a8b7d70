"""What the TRTC source exports loads into a Definitions the way the lead wires it, and keeps
the contracts: weekly Monday partitions, group and pool ``trtc``, 15-minute refresh of the open
week and hourly of the previous one, a retention watch that runs on its own."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import (
    AssetKey,
    Definitions,
    EnvVar,
    build_schedule_context,
)

from pipelines.defs.sources.trtc import jobs
from pipelines.defs.sources.trtc.client import TrtcResource
from pipelines.lib.warehouse import WarehouseResource

KEYS = ("core/fact_trtc_call", "core/fact_trtc_call_callee")


def defs() -> Definitions:
    return Definitions(
        assets=jobs.ASSETS,
        asset_checks=jobs.FRESHNESS_CHECKS,
        jobs=jobs.JOBS,
        schedules=jobs.SCHEDULES,
        resources={
            "warehouse": WarehouseResource(),
            "trtc": TrtcResource(
                base_url="http://localhost",
                sdkappid="1400000001",
                secret_key=EnvVar("TRTC_SECRET_KEY"),
                admin_identifier="administrator",
            ),
        },
    )


def test_loads_with_groups_pools_partitions_and_freshness() -> None:
    d = defs()
    Definitions.validate_loadable(d)
    graph = d.resolve_asset_graph()
    for key in KEYS:
        node = graph.get(AssetKey.from_user_string(key))
        assert node.group_name == "trtc" and node.pools == {"trtc"} and node.freshness_policy is not None
        window = node.partitions_def.time_window_for_partition_key("2026-11-16")
        assert window.start.isoformat() == "2026-11-16T00:00:00+08:00"  # a Monday
        assert window.end.isoformat() == "2026-11-23T00:00:00+08:00"


def test_the_schedule_refreshes_the_open_week_every_15_minutes_and_the_previous_hourly() -> None:
    repo = defs().get_repository_def()
    schedule = repo.get_schedule_def("trtc_calls_schedule")
    assert schedule.cron_schedule == "5-59/15 * * * *"
    at = datetime(2026, 11, 24, 9, 5, tzinfo=ZoneInfo("Asia/Shanghai"))  # a Tuesday
    context = build_schedule_context(scheduled_execution_time=at, repository_def=repo)
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == ["2026-11-16", "2026-11-23"]
    later = build_schedule_context(scheduled_execution_time=at.replace(minute=20), repository_def=repo)
    assert [r.partition_key for r in schedule.evaluate_tick(later).run_requests] == ["2026-11-23"]


def test_the_retention_watch_runs_the_recency_check_alone_every_hour() -> None:
    repo = defs().get_repository_def()
    job = repo.get_job("trtc_retention_watch")
    assert list(job.graph.node_dict) == ["core__fact_trtc_call_pulls_keep_up_with_retention"]  # no fetch
    assert repo.get_schedule_def("trtc_retention_watch_schedule").cron_schedule == "35 * * * *"
