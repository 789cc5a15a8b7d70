"""Alerts reach ALERT_WEBHOOK_URL (received here by a real local HTTP server that keeps
Slack's incoming-webhook contract) with a human ``text`` line and the structured fields,
name the source, asset, partition, what failed and the run's UI link, and carry no secret.
A failing webhook is retried a little, then logged, and never fails the sensor."""

from __future__ import annotations

import json
import logging
import socket
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterInstance,
    SkipReason,
    build_run_status_sensor_context,
    build_sensor_context,
    materialize,
)
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from pipelines.definitions import defs
from pipelines.defs.ops import alerts
from pipelines.defs.sources.crm import assets as crm
from pipelines.defs.sources.crm.client import CrmResource
from pipelines.lib.warehouse import WarehouseResource

UI = "http://dagster.example:3000"
# The sensors tell an asset's source by its group in the code location they run in.
REPOSITORY = defs.get_repository_def()


class _SlackHook(BaseHTTPRequestHandler):
    """Slack's incoming-webhook contract: a JSON object whose ``text`` is a non-empty string
    gets 200 ``ok``, any other body 400 ``no_text`` (or ``invalid_payload`` if it is not JSON).
    With ``fail_with`` set it answers that (status, body) instead, like a webhook in trouble.
    Every body is recorded with the status it got."""

    bodies: list[dict | None] = []
    statuses: list[int] = []
    fail_with: tuple[int, str] | None = None

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        raw = self.rfile.read(int(self.headers["content-length"]))
        try:
            body = json.loads(raw) if self.headers["content-type"] == "application/json" else None
        except ValueError:
            body = None
        text = body.get("text") if isinstance(body, dict) else None
        if self.fail_with:
            status, answer = self.fail_with
        elif body is None:
            status, answer = 400, "invalid_payload"
        elif not isinstance(text, str) or not text.strip():
            status, answer = 400, "no_text"
        else:
            status, answer = 200, "ok"
        type(self).bodies.append(body)
        type(self).statuses.append(status)
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        if status == 429:
            self.send_header("retry-after", "1")
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_SlackHook]]:
    handler = type("SlackHook", (_SlackHook,), {"bodies": [], "statuses": [], "fail_with": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/hooktoken"
    monkeypatch.setenv("ALERT_WEBHOOK_URL", handler.url)
    monkeypatch.setenv("DAGSTER_UI_URL", UI)
    # Retries wait nothing here (a 429's Retry-After included).
    monkeypatch.setattr(alerts, "WEBHOOK_BACKOFF_S", 0.0)
    monkeypatch.setattr(alerts, "WEBHOOK_MAX_WAIT_S", 0.0)
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def _sensor(name: str):  # noqa: ANN202
    return defs.resolve_sensor_def(name)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_failed_run_alerts_the_webhook_with_source_asset_partition_and_link(
    webhook, warehouse_url, sim
) -> None:
    env = sim.env()
    down = CrmResource(
        base_url=f"http://127.0.0.1:{_closed_port()}",  # the vendor is down
        email=env["CRM_EMAIL"],
        secret_key=env["CRM_SECRET_KEY"],
        agent_ids="",
        rate_per_s=0,
        backoff_base_s=0.01,
        max_retries=0,
        timeout_s=2,
    )
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [crm.fact_crm_call],
        partition_key="2026-11-20",
        resources={"crm": down, "warehouse": WarehouseResource(url=warehouse_url)},
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    # repository_def is a beta parameter (a warning); the sensor reads the code location from it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = build_run_status_sensor_context(
            sensor_name="alert_on_run_failure",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=result.get_run_failure_event(),
            repository_def=REPOSITORY,
        ).for_run_failure()
    _sensor("alert_on_run_failure")(context)

    assert webhook.statuses == [200]  # Slack's contract: the body has its text line
    alert = webhook.bodies[0]
    assert alert["kind"] == "run_failure"
    assert alert["source"] == "crm"
    assert alert["assets"] == ["core/fact_crm_call"]
    assert alert["partition"] == "2026-11-20"
    assert alert["failed_steps"] == ["core__fact_crm_call"]
    # The vendor's error by its own name, not Dagster's wrapper of it.
    assert alert["what_failed"].startswith("step core__fact_crm_call failed: VendorHTTPError: Udesk CRM")
    assert alert["url"] == f"{UI}/runs/{result.run_id}"
    # The line a chat tool shows: source, job, partition, what failed, the link.
    # (materialize() runs a hidden job: the asset names the run instead of the job.)
    assert alert["text"].startswith(
        "[crm] run failed: core/fact_crm_call 2026-11-20 — "
        "step core__fact_crm_call failed: VendorHTTPError: Udesk CRM"
    )
    assert alert["text"].endswith(f" {UI}/runs/{result.run_id}")
    assert alert["content"] == alerts.summary(alert)
    text = json.dumps(alert)
    assert env["CRM_SECRET_KEY"] not in text and env["CRM_EMAIL"] not in text


def test_failed_quality_and_freshness_checks_alert_once_and_passing_ones_do_not(webhook) -> None:
    instance = DagsterInstance.ephemeral()
    check_sensor = _sensor("alert_on_check_failure")
    history = AssetCheckEvaluation(asset_key=crm.CALL_KEY, check_name="no_rejects", passed=False)
    instance.report_runless_asset_event(history)
    context = build_sensor_context(instance=instance, repository_def=REPOSITORY)
    check_sensor(context)  # the first tick starts after the history: no alert for it
    assert webhook.bodies == []

    instance.report_runless_asset_event(
        AssetCheckEvaluation(asset_key=crm.CALL_KEY, check_name="no_duplicate_keys", passed=True)
    )
    instance.report_runless_asset_event(
        AssetCheckEvaluation(
            asset_key=crm.CALL_KEY,
            check_name="known_enums",
            passed=False,
            severity=AssetCheckSeverity.ERROR,
            partition="2026-11-20",
            description="unknown result codes",
        )
    )
    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=crm.RECORDING_KEY,
            new_state=FreshnessState.FAIL,
            previous_state=FreshnessState.PASS,
            state_change_timestamp=0.0,
        )
    )
    context = build_sensor_context(instance=instance, cursor=context.cursor, repository_def=REPOSITORY)
    check_sensor(context)
    assert webhook.statuses == [200, 200]
    assert [(a["kind"], a["assets"]) for a in webhook.bodies] == [
        ("check_failure", ["core/fact_crm_call"]),
        ("freshness", ["core/fact_crm_call_recording"]),
    ]
    check, freshness = webhook.bodies
    assert check["source"] == "crm" and check["partition"] == "2026-11-20"
    assert check["check"] == "known_enums" and check["severity"] == "ERROR"
    assert check["what_failed"] == "check known_enums failed (ERROR): unknown result codes"
    assert check["url"] == f"{UI}/assets/core/fact_crm_call"
    assert check["text"] == (
        "[crm] check failed: core/fact_crm_call 2026-11-20 — check known_enums failed (ERROR): "
        f"unknown result codes {UI}/assets/core/fact_crm_call"
    )
    assert freshness["severity"] == "ERROR" and freshness["source"] == "crm"
    assert freshness["text"] == (
        "[crm] asset stale: core/fact_crm_call_recording — freshness policy PASS -> FAIL "
        f"{UI}/assets/core/fact_crm_call_recording"
    )

    # The cursor moved past them: the next tick sends nothing again.
    check_sensor(build_sensor_context(instance=instance, cursor=context.cursor, repository_def=REPOSITORY))
    assert len(webhook.bodies) == 2


def test_without_a_webhook_alerts_are_logged_only(monkeypatch, caplog) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger="pipelines.defs.ops.alerts"):
        assert alerts.send({"kind": "run_failure", "source": "crm"}) is False
    assert 'ALERT {"kind": "run_failure", "source": "crm"}' in caplog.text


def test_the_receiver_keeps_slacks_contract_and_the_text_line_escapes_slack_markup(webhook) -> None:
    # The body alerts had before their text line: Slack refuses it.
    refused = httpx.post(webhook.url, json={"kind": "run_failure", "source": "crm"})
    assert (refused.status_code, refused.text) == (400, "no_text")

    alert = {
        "kind": "run_failure",
        "source": "crm",
        "job": "crm_facts",
        "partition": "2026-11-20",
        "what_failed": "step s failed: VendorResponseError: <html> & <!channel>",
        "url": f"{UI}/runs/r1",
    }
    assert alerts.send(alert) is True
    body = webhook.bodies[-1]
    line = "[crm] run failed: crm_facts 2026-11-20 — step s failed: VendorResponseError: <html> & <!channel>"
    # Slack reads <...> as links and mentions: escaped there; Discord's content is the plain line.
    assert body["text"] == (
        "[crm] run failed: crm_facts 2026-11-20 — step s failed: VendorResponseError: "
        f"&lt;html> &amp; &lt;!channel> {UI}/runs/r1"
    )
    assert body["content"] == f"{line} {UI}/runs/r1"
    assert {k: body[k] for k in alert} == alert


@pytest.mark.parametrize(
    ("status", "answer", "attempts", "logged"),
    [
        (500, "<html>Internal Server Error</html>", 3, "after 3 attempt(s): HTTP 500"),
        (429, "rate_limited", 3, "after 3 attempt(s): HTTP 429 rate_limited"),
        (404, "no_service", 1, "after 1 attempt(s): HTTP 404 no_service"),
        (403, "invalid_token", 1, "after 1 attempt(s): HTTP 403 invalid_token"),
    ],
)
def test_a_failing_webhook_is_retried_on_429_and_5xx_only_then_logged_without_its_url(
    webhook, caplog, status, answer, attempts, logged
) -> None:
    webhook.fail_with = (status, answer)
    with caplog.at_level(logging.WARNING, logger="pipelines.alerts"):
        assert alerts.send({"kind": "run_failure", "source": "crm", "url": f"{UI}/runs/r1"}) is False
    assert webhook.statuses == [status] * attempts
    assert f"alert webhook failed {logged}" in caplog.text
    assert "hooktoken" not in caplog.text and webhook.url not in caplog.text


def test_an_unreachable_webhook_is_retried_then_logged(monkeypatch, caplog) -> None:
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{_closed_port()}/services/hooktoken")
    monkeypatch.setattr(alerts, "WEBHOOK_BACKOFF_S", 0.0)
    with caplog.at_level(logging.WARNING, logger="pipelines.alerts"):
        assert alerts.send({"kind": "run_failure", "source": "crm"}) is False
    assert "alert webhook failed after 3 attempt(s): ConnectError" in caplog.text
    assert "hooktoken" not in caplog.text


def test_a_failing_webhook_does_not_fail_the_check_sensor(webhook, caplog) -> None:
    instance = DagsterInstance.ephemeral()
    check_sensor = _sensor("alert_on_check_failure")
    context = build_sensor_context(instance=instance, repository_def=REPOSITORY)
    check_sensor(context)
    for name in ("known_enums", "no_rejects"):
        instance.report_runless_asset_event(
            AssetCheckEvaluation(asset_key=crm.CALL_KEY, check_name=name, passed=False)
        )
    webhook.fail_with = (500, "")
    context = build_sensor_context(instance=instance, cursor=context.cursor, repository_def=REPOSITORY)
    with caplog.at_level(logging.WARNING, logger="pipelines.alerts"):
        result = check_sensor(context)
    assert isinstance(result, SkipReason)
    assert "2 alerts, 0 taken by the webhook" in result.skip_message
    # The first alert tried 3 times; the tick's other one went to the log only.
    assert webhook.statuses == [500, 500, 500]
    assert caplog.text.count("ALERT {") == 2
    assert "alert webhook failed after 3 attempt(s): HTTP 500" in caplog.text
    assert "1 later alerts of this tick logged only" in caplog.text
    assert webhook.url not in caplog.text

    # The cursor moved past both: the webhook back, the next tick sends nothing again.
    webhook.fail_with = None
    check_sensor(build_sensor_context(instance=instance, cursor=context.cursor, repository_def=REPOSITORY))
    assert len(webhook.statuses) == 3
