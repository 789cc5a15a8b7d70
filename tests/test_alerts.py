"""Alerts reach ALERT_WEBHOOK_URL as JSON (received here by a real local HTTP server), name
the source, asset, partition, what failed and the run's UI link, and carry no secret."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterInstance,
    build_run_status_sensor_context,
    build_sensor_context,
    materialize,
)
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from pipelines.defs.ops import alerts
from pipelines.definitions import defs
from pipelines.defs.sources.crm import assets as crm
from pipelines.defs.sources.crm.client import CrmResource
from pipelines.lib.warehouse import WarehouseResource

UI = "http://dagster.example:3000"


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["content-length"]))
        assert self.headers["content-type"] == "application/json"
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    handler = type("Receiver", (_Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("ALERT_WEBHOOK_URL", f"http://127.0.0.1:{server.server_address[1]}/hook")
    monkeypatch.setenv("DAGSTER_UI_URL", UI)
    try:
        yield handler.received
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
    context = build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()
    _sensor("alert_on_run_failure")(context)

    assert len(webhook) == 1
    alert = webhook[0]
    assert alert["kind"] == "run_failure"
    assert alert["source"] == "crm"
    assert alert["assets"] == ["core/fact_crm_call"]
    assert alert["partition"] == "2026-11-20"
    assert alert["failed_steps"] == ["core__fact_crm_call"]
    # The vendor's error by its own name, not Dagster's wrapper of it.
    assert alert["what_failed"].startswith("step core__fact_crm_call failed: VendorHTTPError: Udesk CRM")
    assert alert["url"] == f"{UI}/runs/{result.run_id}"
    text = json.dumps(alert)
    assert env["CRM_SECRET_KEY"] not in text and env["CRM_EMAIL"] not in text


def test_failed_quality_and_freshness_checks_alert_once_and_passing_ones_do_not(webhook) -> None:
    instance = DagsterInstance.ephemeral()
    check_sensor = _sensor("alert_on_check_failure")
    history = AssetCheckEvaluation(asset_key=crm.CALL_KEY, check_name="no_rejects", passed=False)
    instance.report_runless_asset_event(history)
    context = build_sensor_context(instance=instance)
    check_sensor(context)  # the first tick starts after the history: no alert for it
    assert webhook == []

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
    context = build_sensor_context(instance=instance, cursor=context.cursor)
    check_sensor(context)
    assert [(a["kind"], a["assets"]) for a in webhook] == [
        ("check_failure", ["core/fact_crm_call"]),
        ("freshness", ["core/fact_crm_call_recording"]),
    ]
    check, freshness = webhook
    assert check["source"] == "crm" and check["partition"] == "2026-11-20"
    assert check["check"] == "known_enums" and check["severity"] == "ERROR"
    assert check["what_failed"] == "check known_enums failed (ERROR): unknown result codes"
    assert check["url"] == f"{UI}/assets/core/fact_crm_call"
    assert freshness["severity"] == "ERROR" and freshness["source"] == "crm"

    # The cursor moved past them: the next tick sends nothing again.
    check_sensor(build_sensor_context(instance=instance, cursor=context.cursor))
    assert len(webhook) == 2


def test_without_a_webhook_alerts_are_logged_only(monkeypatch, caplog) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    with caplog.at_level(logging.WARNING, logger="pipelines.defs.ops.alerts"):
        assert alerts.send({"kind": "run_failure", "source": "crm"}) is False
    assert 'ALERT {"kind": "run_failure", "source": "crm"}' in caplog.text
