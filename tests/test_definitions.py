"""The whole Definitions object loads, and keeps the contracts others rely on."""

from dagster import AssetKey, Definitions

from pipelines.definitions import defs


def test_definitions_load() -> None:
    Definitions.validate_loadable(defs)


def test_asset_keys_groups_and_pools() -> None:
    graph = defs.resolve_asset_graph()
    expected = {
        "core/fact_crm_call": ("crm", True),
        "core/fact_crm_call_recording": ("crm", True),
        "core/dim_crm_hangup_reason": ("crm", False),
        "core/fact_crm_call_ivr": ("crm", False),
    }
    for key, (group, partitioned) in expected.items():
        node = graph.get(AssetKey.from_user_string(key))
        assert node.group_name == group
        assert (node.partitions_def is not None) == partitioned
        assert node.pools == {group}
        assert node.freshness_policy is not None


def test_partition_keys_are_window_starts_in_the_vendor_zone() -> None:
    node = defs.resolve_asset_graph().get(AssetKey.from_user_string("core/fact_crm_call"))
    pdef = node.partitions_def
    assert pdef.timezone == "Asia/Shanghai"
    window = pdef.time_window_for_partition_key("2026-11-20")
    assert window.start.isoformat() == "2026-11-20T00:00:00+08:00"
    assert window.end.isoformat() == "2026-11-21T00:00:00+08:00"


def test_schedules_refresh_the_open_and_previous_partition() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from dagster import build_schedule_context

    repo = defs.get_repository_def()
    schedule = repo.get_schedule_def("crm_facts_schedule")
    at = datetime(2026, 11, 22, 9, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
    context = build_schedule_context(scheduled_execution_time=at, repository_def=repo)
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == ["2026-11-21", "2026-11-22"]
    # The open day every 15 minutes; the late-data pass over yesterday once an hour.
    assert schedule.cron_schedule == "10-59/15 * * * *"
    later = build_schedule_context(scheduled_execution_time=at.replace(minute=25), repository_def=repo)
    assert [r.partition_key for r in schedule.evaluate_tick(later).run_requests] == ["2026-11-22"]


def test_rate_and_concurrency_come_from_the_environment(monkeypatch) -> None:  # noqa: ANN001
    from pipelines.definitions import build_resources

    defaults = build_resources()
    assert defaults["crm"].concurrency == 4 and defaults["crm"].rate_per_s == 20.0
    monkeypatch.setenv("CRM_CONCURRENCY", "2")
    monkeypatch.setenv("TRTC_RATE_PER_S", "50")
    tuned = build_resources()
    assert tuned["crm"].concurrency == 2
    assert tuned["trtc"].rate_per_s == 50.0
    assert tuned["isales"].concurrency == defaults["isales"].concurrency


def test_every_resource_field_is_its_sources_variable_and_a_bad_value_names_it(monkeypatch) -> None:  # noqa: ANN001
    import pytest

    from pipelines.definitions import build_resources
    from pipelines.lib.settings import SettingError

    monkeypatch.setenv("PUSHLOG_OVERLAP_MINUTES", "30")
    monkeypatch.setenv("TRTC_MAX_GONE_SHARE", "0.5")
    tuned = build_resources()
    assert tuned["pushlog"].overlap_minutes == 30.0 and tuned["trtc"].max_gone_share == 0.5
    monkeypatch.setenv("CRM_MAX_GONE_SHARE", "2")
    with pytest.raises(SettingError, match="CRM_MAX_GONE_SHARE"):
        build_resources()


def test_every_schedule_and_sensor_launches_a_named_job() -> None:
    """A run of an anonymous job (``__ASSET_JOB``) tells an operator nothing in the runs list:
    a sensor that targets assets, or an automation condition's sensor, would start one."""
    repo = defs.get_repository_def()
    for schedule in repo.schedule_defs:
        assert not schedule.job_name.startswith("__"), schedule.name
    for sensor in repo.sensor_defs:
        # The alert sensors target nothing: they post to a webhook and start no run.
        assert sensor.asset_selection is None, f"{sensor.name} targets assets: its runs are anonymous"
        for target in sensor.targets:
            assert not target.job_name.startswith("__"), sensor.name


def test_the_freshness_checks_run_in_the_freshness_checks_job() -> None:
    from dagster import AssetCheckKey, DagsterInstance, build_sensor_context

    expected = {
        AssetCheckKey(AssetKey.from_user_string(asset), "freshness_check")
        for asset in (
            "core/fact_crm_call",
            "core/fact_crm_call_recording",
            "core/fact_isales_api_call",
            "core/fact_push_log",
            "core/fact_trtc_call",
            "core/fact_trtc_call_callee",
        )
    }
    job = defs.resolve_job_def("freshness_checks")
    assert job.asset_layer.asset_graph.asset_check_keys == expected
    assert not job.asset_layer.executable_asset_keys  # the checks alone: nothing is pulled

    # On a new instance no check has run: the first tick asks for all of them, in that job.
    sensor = defs.resolve_sensor_def("freshness_checks_sensor")
    assert [t.job_name for t in sensor.targets] == ["freshness_checks"]
    with DagsterInstance.ephemeral() as instance:
        context = build_sensor_context(instance=instance, repository_def=defs.get_repository_def())
        (request,) = sensor.evaluate_tick(context).run_requests
    assert request.job_name in (None, "freshness_checks")  # None: the sensor's one job
    assert set(request.asset_check_keys) == expected


def test_the_dg_project_names_the_code_location_as_every_workspace_does() -> None:
    # Unset, dg names the location after the checkout's folder, and a code server registered
    # as "callcenter" logs a mismatch warning on every load of a checkout named otherwise.
    import tomllib

    from pipelines.lib.warehouse import PROJECT_ROOT

    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]
    workspace = (PROJECT_ROOT / "workspace.yaml").read_text()
    assert config["dg"]["project"]["code_location_name"] == config["dagster"]["code_location_name"]
    assert f"location_name: {config['dagster']['code_location_name']}" in workspace
