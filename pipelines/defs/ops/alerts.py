"""Alerts: a failed run, a failed quality or freshness check, or an asset whose freshness
policy turned WARN/FAIL becomes one JSON message, POSTed to ``ALERT_WEBHOOK_URL`` and always
logged. Without the variable, alerts are logged only.

A message names the source, the asset(s), the partition, what failed and a link to the run
(or asset) in the UI, under ``DAGSTER_UI_URL``. It carries no credentials and no record
data: only names, keys, counts and the failure's first line (the project's error texts
hold no secret or customer value).

The body keeps those structured fields (for an incident tool's generic webhook) and adds
the one human line chat tools display: ``text`` (Slack, which refuses a body without it
with HTTP 400 ``no_text``; Mattermost; Teams' simple connector cards) and the same line as
``content`` (Discord). dagster-slack and dagster-msteams were considered: each serves one
tool, adds a dependency and drops the structured fields, where one generic webhook with a
``text`` line serves all of them. (Teams' newer Workflows webhooks want an Adaptive Card
instead; put a flow that maps ``text`` into one in front of them.)

A webhook that refuses or is down is retried a little (connection errors, 429, 5xx), then
the failure is logged, never the URL (Slack's embeds a token); it never fails the sensor.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
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
# A sensor tick has 60 s (Dagster's gRPC timeout) and a run-failure tick handles up to 5 runs:
# an alert's worst case (3 connect timeouts and the waits between them) stays near 10 s.
WEBHOOK_TIMEOUT_S = 5.0
WEBHOOK_CONNECT_TIMEOUT_S = 3.0
WEBHOOK_ATTEMPTS = 3
# Waits between attempts: this, then twice it; a 429's Retry-After is honoured up to the cap.
WEBHOOK_BACKOFF_S = 0.5
WEBHOOK_MAX_WAIT_S = 5.0
# A failure's text in a message: its first line, this long at most.
MAX_DETAIL = 300
# The human line, this long at most (Discord refuses ``content`` over 2000 characters).
MAX_TEXT = 1000
# What a chat tool's error body may be logged as: a short code like Slack's ``no_text``,
# never free text (a generic webhook might echo the request).
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")
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


_HEADLINES = {
    "run_failure": "run failed",
    "check_failure": "check failed",
    "freshness_check": "freshness check failed",
    "freshness": "asset stale",
}


def summary(alert: Mapping[str, Any]) -> str:
    """The alert as one line: ``[crm] run failed: crm_facts 2026-11-20 — step
    core__fact_crm_call failed: VendorHTTPError: ... http://.../runs/...``.

    Built from the structured fields only, so it holds nothing they do not. The link is bare:
    Slack, Mattermost, Teams and Discord all make a bare URL a link.
    """
    kind = alert.get("kind")
    job = str(alert.get("job") or "")
    assets = list(alert.get("assets") or [])
    subject = ", ".join(assets[:3]) + (f" and {len(assets) - 3} more" if len(assets) > 3 else "")
    # A run launched from the UI's Materialize button is in Dagster's hidden __ASSET_JOB:
    # its assets say more.
    if job and not job.startswith("__"):
        subject = job
    head = " ".join(
        part
        for part in (
            f"[{alert['source']}]" if alert.get("source") else "",
            f"{_HEADLINES.get(str(kind), str(kind or 'alert'))}:",
            subject,
            alert.get("partition") or "",
        )
        if part
    )
    if alert.get("what_failed"):
        head += f" — {alert['what_failed']}"
    url = str(alert.get("url") or "")
    room = MAX_TEXT - len(url) - 1
    if len(head) > room:
        head = head[: room - 1] + "…"
    return f"{head} {url}" if url else head


def _slack_escaped(text: str) -> str:
    # Slack (and Mattermost) read <...> as links and mentions (<!channel>): an error text must
    # not make one. Without its "<" no sequence opens; a lone ">" stays, so "PASS -> FAIL"
    # reads the same in the tools that show entities as they are.
    return text.replace("&", "&amp;").replace("<", "&lt;")


def send(alert: Mapping[str, Any], *, post: bool = True) -> bool:
    """Log the alert and POST it to ALERT_WEBHOOK_URL if set (and ``post``); True when the
    webhook took it.

    A webhook that fails must not stop the other alerts nor the sensor: after the retries its
    error is logged and False returned.
    """
    logger.warning("ALERT %s", json.dumps(alert, sort_keys=True, ensure_ascii=False))
    url = os.environ.get("ALERT_WEBHOOK_URL")
    if not url or not post:
        return False
    line = summary(alert)
    # No structured field's name means anything to Slack, Mattermost, Teams or Discord: they
    # show the line and ignore the rest.
    body = {**alert, "text": _slack_escaped(line), "content": line}
    return _post(url, json.dumps(body, sort_keys=True, ensure_ascii=False).encode())


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", 0)), WEBHOOK_MAX_WAIT_S)
    except ValueError:  # an HTTP date: the backoff will do
        return 0.0


def _post(url: str, body: bytes) -> bool:
    timeout = httpx.Timeout(WEBHOOK_TIMEOUT_S, connect=WEBHOOK_CONNECT_TIMEOUT_S)
    problem = ""
    for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
        wait = WEBHOOK_BACKOFF_S * 2 ** (attempt - 1)
        try:
            response = httpx.post(
                url, content=body, headers={"content-type": "application/json"}, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the webhook: another attempt cannot post the alert twice.
            problem = type(exc).__name__
        except Exception as exc:  # an alert must never fail its sensor
            # A read timeout may have posted it; a malformed URL will not get better. The
            # exception's text may hold the URL (and its token): only its kind is logged.
            problem = type(exc).__name__
            break
        else:
            if response.is_success:
                return True
            code = response.text.strip()
            problem = f"HTTP {response.status_code}" + (f" {code}" if _ERROR_CODE.fullmatch(code) else "")
            if response.status_code != 429 and response.status_code < 500:
                break  # refused (gone, bad body, bad token): retrying sends the same again
            wait = max(wait, _retry_after(response))
        if attempt < WEBHOOK_ATTEMPTS:
            time.sleep(wait)
    logger.error("alert webhook failed after %d attempt(s): %s", attempt, problem)
    return False


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
        sent = delivered = skipped = 0
        post = True
        index = _index(context)
        for record in records:
            alert = check_alert(record, index, instance)
            if alert is not None:
                sent += 1
                if send(alert, post=post):
                    delivered += 1
                elif post:
                    # The webhook failed (retries spent): this tick's other alerts are logged
                    # only, so a webhook that hangs cannot hold the tick past its timeout.
                    post = False
                else:
                    skipped += 1
            context.update_cursor(str(record.storage_id))
        if skipped and os.environ.get("ALERT_WEBHOOK_URL"):
            logger.error("alert webhook failed: %d later alerts of this tick logged only", skipped)
        return SkipReason(
            f"{len(records)} check events read, {sent} alerts, {delivered} taken by the webhook"
        )

    return [alert_on_run_failure, alert_on_check_failure]


alert_on_run_failure, alert_on_check_failure = build_alert_sensors()
