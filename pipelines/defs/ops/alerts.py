"""Alerts: a failed run, a failed quality or freshness check, or an asset whose freshness
policy turned WARN/FAIL becomes one JSON message, POSTed to ``ALERT_WEBHOOK_URL`` (Slack,
Teams, an incident tool's generic webhook) and always logged. Without the variable, alerts
are logged only.

A message names the source, the asset(s), the partition, what failed and a link to the run
(or asset) in the UI, under ``DAGSTER_UI_URL``. It carries no credentials and no record
data: only names, keys, counts and the failure's first line (the project's error texts
hold no secret or customer value).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from dagster import (
    AssetKey,
    AssetsDefinition,
    DagsterEventType,
    DefaultSensorStatus,
    EventRecordsFilter,
    RunFailureSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

logger = logging.getLogger("pipelines.defs.ops.alerts")

DEFAULT_UI_URL = "http://127.0.0.1:3000"
WEBHOOK_TIMEOUT_S = 10.0
# A failure's text in a message: its first line, this long at most.
MAX_DETAIL = 300
# Check events read per sensor tick; the rest wait for the next tick (the cursor says where).
EVENTS_PER_TICK = 200
PARTITION_TAG = "dagster/partition"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def ui_url() -> str:
    return (os.environ.get("DAGSTER_UI_URL") or DEFAULT_UI_URL).rstrip("/")


def _first_line(text: str | None) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def _error_line(error: Any) -> str:  # noqa: ANN401 (SerializableErrorInfo)
    """``VendorHTTPError: Udesk CRM /v1/callLogs: ...``: the class and the message's first line
    (whose own ``module.Class: `` prefix is dropped)."""
    line = _first_line(error.message)
    head, _, rest = line.partition(": ")
    if rest and head.endswith(error.cls_name):
        line = rest
    return f"{error.cls_name}: {line}"


def send(alert: Mapping[str, Any]) -> bool:
    """Log the alert and POST it to ALERT_WEBHOOK_URL if set; True when the webhook took it.

    A webhook that is down must not stop the other alerts: its error is logged instead.
    """
    body = json.dumps(alert, sort_keys=True, ensure_ascii=False)
    logger.warning("ALERT %s", body)
    url = os.environ.get("ALERT_WEBHOOK_URL")
    if not url:
        return False
    try:
        response = httpx.post(
            url,
            content=body.encode(),
            headers={"content-type": "application/json"},
            timeout=WEBHOOK_TIMEOUT_S,
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        # The URL may embed a token (Slack's do): name only the error's kind and status.
        status = getattr(getattr(exc, "response", None), "status_code", None)
        logger.error("alert webhook failed: %s%s", type(exc).__name__, f" (HTTP {status})" if status else "")
        return False
    return True


class AssetIndex:
    """Which source (asset group) an asset or a step belongs to."""

    def __init__(self, assets: Iterable[object]) -> None:
        self.group_by_key: dict[AssetKey, str] = {}
        self.keys_by_step: dict[str, list[AssetKey]] = {}
        for assets_def in assets:
            if not isinstance(assets_def, AssetsDefinition):
                continue
            self.group_by_key.update(assets_def.group_names_by_key)
            self.keys_by_step.setdefault(assets_def.node_def.name, []).extend(assets_def.keys)

    def source(self, keys: Iterable[AssetKey], job_name: str | None = None) -> str | None:
        for key in keys:
            if key in self.group_by_key:
                return self.group_by_key[key]
        groups = set(self.group_by_key.values())
        # Jobs are named after their source (crm_facts, trtc_calls, ...).
        return next((g for g in sorted(groups) if job_name and job_name.startswith(f"{g}_")), None)


def _partition(tags: Mapping[str, str]) -> str | None:
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    start, end = (tags.get(t) for t in RANGE_TAGS)
    return f"{start}...{end}" if start and end else None


def run_failure_alert(context: RunFailureSensorContext, index: AssetIndex) -> dict[str, Any]:
    run = context.dagster_run
    step_failures = context.get_step_failure_events()
    failed_keys = [k for e in step_failures for k in index.keys_by_step.get(e.step_key or "", [])]
    keys = failed_keys or sorted(run.asset_selection or [], key=lambda k: k.to_user_string())
    if step_failures:
        error = step_failures[0].step_failure_data.error
        # Dagster wraps the asset's exception: name the one the asset raised.
        while error is not None and error.cause is not None:
            error = error.cause
        detail = _error_line(error) if error else "step failed"
        what = f"step {step_failures[0].step_key} failed: {detail}"
    else:
        # No step failed: the worker died, the run never started, or it was terminated.
        what = f"run failed: {_first_line(context.failure_event.message)}"
    return {
        "kind": "run_failure",
        "source": index.source(keys, run.job_name),
        "job": run.job_name,
        "assets": [k.to_user_string() for k in keys],
        "partition": _partition(run.tags),
        "what_failed": what,
        "failed_steps": sorted({e.step_key for e in step_failures if e.step_key}),
        "run_id": run.run_id,
        "url": f"{ui_url()}/runs/{run.run_id}",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _asset_url(key: AssetKey) -> str:
    return f"{ui_url()}/assets/{'/'.join(key.path)}"


def check_alert(record: Any, index: AssetIndex, instance: Any = None) -> dict[str, Any] | None:  # noqa: ANN401
    """The alert for one check evaluation or freshness change (an EventLogRecord), or None if
    it is healthy. Checks evaluated inside a partition's materialization name no partition of
    their own: the run's partition tag tells it (``instance`` given)."""
    entry = record.event_log_entry
    event = entry.dagster_event
    at = datetime.fromtimestamp(entry.timestamp, UTC).isoformat(timespec="seconds")
    if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
        evaluation = event.asset_check_evaluation_data
        if evaluation.passed:
            return None
        key = evaluation.asset_key
        what = f"check {evaluation.check_name} failed ({evaluation.severity.value})"
        if evaluation.description:
            what += f": {_first_line(evaluation.description)}"
        partition = evaluation.partition
        if partition is None and instance is not None and entry.run_id:
            run = instance.get_run_by_id(entry.run_id)
            partition = _partition(run.tags) if run else None
        return {
            "kind": "freshness_check" if "freshness" in evaluation.check_name else "check_failure",
            "source": index.source([key]),
            "assets": [key.to_user_string()],
            "partition": partition,
            "check": evaluation.check_name,
            "severity": evaluation.severity.value,
            "what_failed": what,
            "run_id": entry.run_id or None,
            "url": f"{ui_url()}/runs/{entry.run_id}" if entry.run_id else _asset_url(key),
            "at": at,
        }
    change = event.asset_freshness_state_change_data
    # FreshnessState has no public import: its values are the names the UI shows.
    if change.new_state.value not in ("WARN", "FAIL"):
        return None
    return {
        "kind": "freshness",
        "source": index.source([change.key]),
        "assets": [change.key.to_user_string()],
        "partition": None,
        "severity": "ERROR" if change.new_state.value == "FAIL" else "WARN",
        "what_failed": f"freshness policy {change.previous_state.value} -> {change.new_state.value}",
        "run_id": None,
        "url": _asset_url(change.key),
        "at": at,
    }


_CHECK_EVENT_TYPES = (DagsterEventType.ASSET_CHECK_EVALUATION, DagsterEventType.FRESHNESS_STATE_CHANGE)


def _index(context: SensorEvaluationContext | RunFailureSensorContext) -> AssetIndex:
    repository = context.repository_def
    return AssetIndex(repository.assets_defs_by_key.values() if repository else ())


def build_alert_sensors() -> list[SensorDefinition]:
    """The two alert sensors, RUNNING by default. Each asset's source is its group in the code
    location the sensor runs in, so no source is named here."""

    @run_failure_sensor(
        name="alert_on_run_failure",
        default_status=DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
        description="Sends a JSON alert to ALERT_WEBHOOK_URL (and the log) for every failed run.",
    )
    def alert_on_run_failure(context: RunFailureSensorContext) -> None:
        send(run_failure_alert(context, _index(context)))

    @sensor(
        name="alert_on_check_failure",
        minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Sends a JSON alert to ALERT_WEBHOOK_URL (and the log) for every failed quality or "
            "freshness check, and every asset whose freshness policy turns WARN or FAIL."
        ),
    )
    def alert_on_check_failure(context: SensorEvaluationContext) -> SkipReason:
        instance = context.instance
        if context.cursor is None:
            # First tick: alert from now on, not on the history before the sensor existed.
            context.update_cursor(str(instance.event_log_storage.get_maximum_record_id() or 0))
            return SkipReason("starting after the latest event")
        after = int(context.cursor)
        records = sorted(
            (
                record
                for event_type in _CHECK_EVENT_TYPES
                # The instance's method is deprecated for 2.0 with no replacement for these event
                # types; its storage's is the one it wraps.
                for record in instance.event_log_storage.get_event_records(
                    EventRecordsFilter(event_type=event_type, after_cursor=after),
                    limit=EVENTS_PER_TICK,
                    ascending=True,
                )
            ),
            key=lambda r: r.storage_id,
        )[:EVENTS_PER_TICK]
        sent = 0
        index = _index(context)
        for record in records:
            alert = check_alert(record, index, instance)
            if alert is not None:
                send(alert)
                sent += 1
            context.update_cursor(str(record.storage_id))
        return SkipReason(f"{len(records)} check events read, {sent} alerts sent")

    return [alert_on_run_failure, alert_on_check_failure]


alert_on_run_failure, alert_on_check_failure = build_alert_sensors()
