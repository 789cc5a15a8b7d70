"""The iSales assets end to end: simulator over real HTTP, real PostgreSQL, Dagster runs.

The simulator's data clock is frozen on Friday 2026-11-20 20:00 in Shanghai (signatures are
judged by the wall clock), so the week of 2026-11-09 is closed and the week of 2026-11-16 open.
Every request body the simulator receives, and every answer it gives, is recorded: the tests
assert on what the vendor saw, not on what the client meant to send.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from dagster import (
    AssetsDefinition,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    build_schedule_context,
    materialize,
)
from starlette.applications import Starlette

from pipelines.defs.sources.isales import assets, jobs
from pipelines.defs.sources.isales.client import ISalesResource
from pipelines.lib.warehouse import WarehouseResource
from simulator.app import Simulator
from simulator.common import Fault
from simulator.server import ThreadedServer
from tests.helpers import checks, metadata

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 20, 0, tzinfo=SHANGHAI)
CLOSED_WEEK, OPEN_WEEK = "2026-11-09", "2026-11-16"
CALLLOGS = "/rest/isales/v1/openapi/campaigns/{vdnId}/calllogs"
API_TABLE, SERVER_TABLE = "core/fact_isales_api_call", "core/dim_isales_file_server"


class RecordingSimulator(Simulator):
    """The simulator with a tap on the iSales mount: (path, headers, body, status, answer)."""

    def build(self) -> Starlette:
        app = super().build()
        self.exchanges: list[dict[str, Any]] = []

        async def tapped(scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not scope["path"].startswith("/isales/"):
                await app(scope, receive, send)
                return
            entry: dict[str, Any] = {
                "path": scope["path"],
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "body": b"",
                "answer": b"",
            }
            self.exchanges.append(entry)

            async def recv() -> dict:
                message = await receive()
                entry["body"] += message.get("body", b"")
                return message

            async def snd(message: dict) -> None:
                if message["type"] == "http.response.start":
                    entry["status"] = message["status"]
                elif message["type"] == "http.response.body":
                    entry["answer"] += message.get("body", b"")
                await send(message)

            await app(scope, recv, snd)

        return tapped  # type: ignore[return-value]

    def calllog_requests(self) -> list[tuple[int, dict, dict]]:
        """(vdn, request body, answer) of every call-log request."""
        out = []
        for e in self.exchanges:
            if e["path"].endswith("/calllogs"):
                vdn = int(e["path"].rsplit("/", 2)[-2])
                out.append((vdn, json.loads(e["body"]), json.loads(e["answer"])))
        return out


@pytest.fixture
def simulator() -> RecordingSimulator:
    sim = RecordingSimulator()
    settings = sim.settings["isales"]
    settings.volume = 50  # 350 records a week per VDN: pages of 100, 100, 100, 50
    settings.vdn_ids = (1, 2, 3)
    sim.state.clock.set(now=NOW.timestamp(), auth_wall=True)
    return sim


def resources(warehouse_url: str, **overrides: Any) -> dict[str, Any]:
    env = os.environ  # the sim fixture exported the ISALES_* variables
    fields: dict[str, Any] = {
        "base_url": env["ISALES_BASE_URL"],
        "ak": env["ISALES_AK"],
        "sk": env["ISALES_SK"],
        "vdn_ids": env["ISALES_VDN_IDS"],
        "timezone": env["ISALES_TIMEZONE"],
        "sign_variant": env["ISALES_SIGN_VARIANT"],
        "rate_per_s": 0,
        "max_retries": 1,
        **overrides,
    }
    return {"warehouse": WarehouseResource(url=warehouse_url), "isales": ISalesResource(**fields)}


def run(
    asset: AssetsDefinition, warehouse_url: str, partition: str | None = None, **overrides: Any
) -> ExecuteInProcessResult:
    return materialize(
        [asset],
        partition_key=partition,
        resources=resources(warehouse_url, **overrides),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def per_vdn(db: psycopg.Connection, sql: str = "count(*)") -> dict[int, Any]:
    return dict(
        db.execute(f"SELECT vdn_id, {sql} FROM core.fact_isales_api_call GROUP BY 1 ORDER BY 1").fetchall()
    )


def test_week_loads_every_vdn_within_the_vendor_rules(
    simulator: RecordingSimulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    result = run(assets.fact_isales_api_call, warehouse_url, CLOSED_WEEK)
    assert result.success
    assert per_vdn(db) == {1: 350, 2: 350, 3: 350}
    meta = metadata(result, API_TABLE)
    for vdn in (1, 2, 3):
        assert meta[f"vdn_{vdn}_rows"] == 350
        assert meta[f"vdn_{vdn}_api_count"] == 350
        assert meta[f"vdn_{vdn}_pages"] == 4
        assert meta[f"vdn_{vdn}_requests"] == 4  # the minimum at limit 100
    assert "| 2 | 350 | 350 |" in meta["per_vdn"]
    assert meta["api_total"] == 1050 and meta["dagster/row_count"] == 1050
    assert checks(result) == {
        "reconciles_with_api": True,
        "no_duplicate_keys": True,
        "no_rejects": True,
        "required_not_null": True,
        "known_enums": True,
        "unexpected_fields": True,
        "no_mass_disappearance": True,
    }

    # What the vendor saw: every answer a success, no window over 7 days, no page over 100.
    seen = simulator.calllog_requests()
    assert len(seen) == 12
    assert all(answer["resultCode"] == "0200000" for _, _, answer in seen)
    for _, body, _ in seen:
        assert 1 <= body["limit"] <= 100 and body["offset"] % body["limit"] == 0
        begin = datetime.fromisoformat(body["beginTime"])
        end = datetime.fromisoformat(body["endTime"])
        assert timedelta(0) <= end - begin <= timedelta(days=7)
        assert (body["beginTime"], body["endTime"]) == ("2026-11-09 00:00:00", "2026-11-15 23:59:59")
    assert {(vdn, body["offset"]) for vdn, body, _ in seen} == {
        (v, o) for v in (1, 2, 3) for o in (0, 100, 200, 300)
    }
    for e in simulator.exchanges:
        assert e["headers"]["content-type"] == "application/json; charset=UTF-8"

    # Rows carry their VDN; raw keys and partition keys include it.
    raw = db.execute(
        "SELECT split_part(record_key, ':', 1), partition_key, count(*) FROM raw.isales_api_call GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    assert raw == [
        ("1", "2026-11-09/vdn-1", 350),
        ("2", "2026-11-09/vdn-2", 350),
        ("3", "2026-11-09/vdn-3", 350),
    ]
    mismatched = db.execute(
        "SELECT count(*) FROM core.fact_isales_api_call f LEFT JOIN raw.isales_api_call r "
        "ON r.record_key = f.vdn_id || ':' || f.id "
        "WHERE r.record_key IS NULL OR r.partition_key <> '2026-11-09/vdn-' || f.vdn_id"
    ).fetchone()[0]
    assert mismatched == 0

    # request: parsed into jsonb, the raw string kept only when it does not parse.
    parsed, unparsable, both = db.execute(
        "SELECT count(*) FILTER (WHERE jsonb_typeof(request) = 'object' AND request_raw IS NULL), "
        "count(*) FILTER (WHERE request IS NULL AND request_raw IS NOT NULL), "
        "count(*) FILTER (WHERE request IS NOT NULL AND request_raw IS NOT NULL) FROM core.fact_isales_api_call"
    ).fetchone()
    assert parsed + unparsable == 1050 and unparsable > 0 and both == 0
    truncated = db.execute(
        "SELECT f.request_raw, r.record->>'request' FROM core.fact_isales_api_call f "
        "JOIN raw.isales_api_call r ON r.record_key = f.vdn_id || ':' || f.id WHERE f.request_raw IS NOT NULL LIMIT 1"
    ).fetchone()
    assert truncated[0] == truncated[1]  # kept exactly as sent
    # a parsed request names the VDN it was logged in (the simulator's requests carry vdnId)
    assert (
        db.execute(
            "SELECT count(*) FROM core.fact_isales_api_call WHERE (request->>'vdnId')::int <> vdn_id"
        ).fetchone()[0]
        == 0
    )

    # operTime at its offset; the id's first 13 digits are the same instant (simulator default).
    assert (
        db.execute(
            "SELECT count(*) FROM core.fact_isales_api_call f JOIN raw.isales_api_call r "
            "ON r.record_key = f.vdn_id || ':' || f.id "
            "WHERE f.oper_time <> (r.record->>'operTime')::timestamptz "
            "OR f.oper_time <> date_trunc('second', to_timestamp(left(f.id, 13)::bigint / 1000.0))"
        ).fetchone()[0]
        == 0
    )
    window = db.execute("SELECT min(oper_time), max(oper_time) FROM core.fact_isales_api_call").fetchone()
    assert window[0] >= datetime(2026, 11, 9, tzinfo=SHANGHAI) and window[1] < datetime(
        2026, 11, 16, tzinfo=SHANGHAI
    )

    # resultCode text with its leading zero, 8-digit codes distinct from 7-digit ones.
    codes = {r[0] for r in db.execute("SELECT DISTINCT result_code FROM core.fact_isales_api_call")}
    assert "0200000" in codes and any(len(c) == 8 and c.startswith("0") for c in codes)
    assert (
        db.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = 'core' "
            "AND table_name = 'fact_isales_api_call' AND column_name = 'result_code'"
        ).fetchone()[0]
        == "text"
    )


def test_oper_time_is_stored_at_the_offset_it_carries(
    simulator: RecordingSimulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    # The seed's sample labels Shanghai wall time "+00:00": the label is what we store.
    simulator.settings["isales"].oper_time_wall_clock = True
    result = run(assets.fact_isales_api_call, warehouse_url, CLOSED_WEEK, vdn_ids="1")
    assert result.success
    shifts = db.execute(
        "SELECT DISTINCT f.oper_time - date_trunc('second', to_timestamp(left(f.id, 13)::bigint / 1000.0)), "
        "bool_and(f.oper_time = (r.record->>'operTime')::timestamptz) "
        "FROM core.fact_isales_api_call f JOIN raw.isales_api_call r ON r.record_key = f.vdn_id || ':' || f.id "
        "GROUP BY 1"
    ).fetchall()
    assert shifts == [(timedelta(hours=8), True)]


def test_envelope_error_is_typed_and_leaves_the_warehouse_unchanged(
    simulator: RecordingSimulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    assert run(assets.fact_isales_api_call, warehouse_url, CLOSED_WEEK).success
    before = db.execute(
        "SELECT vdn_id, count(*), max(_loaded_at) FROM core.fact_isales_api_call GROUP BY 1 ORDER BY 1"
    ).fetchall()
    raw_before = db.execute("SELECT count(*), max(fetched_at) FROM raw.isales_api_call").fetchone()
    # VDN 1 (4 pages) and VDN 2's first page succeed, then the vendor answers 0200033.
    simulator.state.faults.arm(CALLLOGS, Fault("envelope", times=-1, after=5))
    result = run(assets.fact_isales_api_call, warehouse_url, CLOSED_WEEK)
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    text = error.message + "".join(c.message for c in [error.cause] if c)
    assert "0200033" in text and "外呼数据不存在" in text and "/campaigns/2/calllogs" in text
    assert "VendorError" in (error.cause.cls_name if error.cause else error.cls_name)
    # Nothing committed, not even VDN 1, which had loaded completely.
    assert (
        db.execute(
            "SELECT vdn_id, count(*), max(_loaded_at) FROM core.fact_isales_api_call GROUP BY 1 ORDER BY 1"
        ).fetchall()
        == before
    )
    assert db.execute("SELECT count(*), max(fetched_at) FROM raw.isales_api_call").fetchone() == raw_before


def test_rerun_is_idempotent_and_prunes_only_its_own_vdn(
    simulator: RecordingSimulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    first = run(assets.fact_isales_api_call, warehouse_url, OPEN_WEEK)
    assert first.success
    open_rows = per_vdn(db)
    # Mon 00:00 to Fri 20:00 at 50 a day: 4 days and 20 hours, so 241 or 242 per VDN.
    assert set(open_rows) == {1, 2, 3} and all(240 <= n <= 242 for n in open_rows.values())
    snapshot = db.execute(
        "SELECT vdn_id, id, oper_time, request, request_raw, result_code FROM core.fact_isales_api_call ORDER BY 1, 2"
    ).fetchall()

    # Rows the vendor no longer returns, in VDNs 1 and 2.
    for vdn in (1, 2):
        db.execute(
            "INSERT INTO core.fact_isales_api_call (vdn_id, id, oper_time, type, _loaded_at) "
            "VALUES (%s, 'dropped-by-vendor', %s, 'GET', now() - interval '1 day')",
            (vdn, datetime(2026, 11, 17, 12, tzinfo=SHANGHAI)),
        )
    again = run(assets.fact_isales_api_call, warehouse_url, OPEN_WEEK, vdn_ids="1,3")
    assert again.success
    meta = metadata(again, API_TABLE)
    assert meta["vdn_1_rows"] == open_rows[1] and "vdn_2_rows" not in meta
    assert meta["rows_gone core.fact_isales_api_call"] == 1
    # VDN 1's stale row is kept and marked gone; VDN 2, not in this run, is untouched.
    assert db.execute(
        "SELECT vdn_id, _gone_at IS NOT NULL FROM core.fact_isales_api_call WHERE id = 'dropped-by-vendor' "
        "ORDER BY 1"
    ).fetchall() == [(1, True), (2, False)]
    db.execute("DELETE FROM core.fact_isales_api_call WHERE id = 'dropped-by-vendor'")
    third = run(assets.fact_isales_api_call, warehouse_url, OPEN_WEEK)
    assert third.success
    assert (
        db.execute(
            "SELECT vdn_id, id, oper_time, request, request_raw, result_code FROM core.fact_isales_api_call ORDER BY 1, 2"
        ).fetchall()
        == snapshot
    )
    assert db.execute("SELECT count(*) FROM raw.isales_api_call").fetchone()[0] == sum(open_rows.values())
    assert metadata(third, API_TABLE)["rows_gone core.fact_isales_api_call"] == 0


def test_file_servers_snapshot_marks_gone_per_vdn(
    simulator: RecordingSimulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    simulator.settings["isales"].file_servers_per_vdn = 7  # with limit 3: pages of 3, 3, 1, no count
    first = run(assets.dim_isales_file_server, warehouse_url, limit=3)
    assert first.success and checks(first) == {
        "no_rejects": True,
        "unexpected_fields": True,
        "no_mass_disappearance": True,
    }
    rows = db.execute(
        "SELECT vdn_id, count(*), count(*) FILTER (WHERE ip IS NULL AND port IS NULL AND file_path IS NULL) "
        "FROM core.dim_isales_file_server WHERE _gone_at IS NULL GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [(1, 7, 2), (2, 7, 2), (3, 7, 2)]  # servers 0 and 5 are placeholders
    assert metadata(first, SERVER_TABLE)["vdn_1_pages"] == 3
    assert (
        db.execute(
            "SELECT count(*) FROM core.dim_isales_file_server WHERE port IS NOT NULL AND port !~ '^[0-9]+$'"
        ).fetchone()[0]
        == 0
    )
    first_seen = dict(
        db.execute("SELECT vdn_id || ':' || server_id, _loaded_at FROM core.dim_isales_file_server")
    )

    gone_id = db.execute(
        "SELECT server_id FROM core.dim_isales_file_server WHERE vdn_id = 1 AND ip IS NOT NULL ORDER BY server_id LIMIT 1"
    ).fetchone()[0]
    simulator.settings["isales"].removed_server_ids.add(gone_id)
    # A run over VDN 1 only must not mark VDN 2's or 3's servers gone.
    second = run(assets.dim_isales_file_server, warehouse_url, limit=3, vdn_ids="1")
    assert second.success
    assert metadata(second, SERVER_TABLE)["vdn_1_rows_gone"] == 1
    gone = db.execute(
        "SELECT vdn_id, server_id, _loaded_at, _gone_at FROM core.dim_isales_file_server WHERE _gone_at IS NOT NULL"
    ).fetchall()
    assert len(gone) == 1
    vdn, server, loaded_at, gone_at = gone[0]
    assert (vdn, server) == (1, gone_id)
    assert loaded_at == first_seen[f"1:{gone_id}"] and gone_at > loaded_at  # last seen kept
    assert db.execute("SELECT count(*) FROM core.dim_isales_file_server").fetchone()[0] == 21  # none deleted

    # Listed again: live again.
    simulator.settings["isales"].removed_server_ids.clear()
    assert run(assets.dim_isales_file_server, warehouse_url, limit=3).success
    assert (
        db.execute("SELECT count(*) FROM core.dim_isales_file_server WHERE _gone_at IS NOT NULL").fetchone()[
            0
        ]
        == 0
    )


def test_group_materializes_with_a_monday_partition_and_definitions_load(
    simulator: RecordingSimulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    defs = Definitions(
        assets=jobs.ASSETS,
        asset_checks=jobs.FRESHNESS_CHECKS,
        jobs=jobs.JOBS,
        schedules=jobs.SCHEDULES,
        resources=resources(warehouse_url),
    )
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        partition_key=CLOSED_WEEK, instance=DagsterInstance.ephemeral(), raise_on_error=False
    )
    assert result.success
    assert per_vdn(db) == {1: 350, 2: 350, 3: 350}
    assert db.execute("SELECT count(*) FROM core.dim_isales_file_server").fetchone()[0] == 15
    # The schedule's first tick of an hour asks for the open week and the one before.
    schedule = defs.resolve_schedule_def("isales_api_calls_schedule")
    context = build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 20, 12, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert [r.partition_key for r in requests] == [CLOSED_WEEK, OPEN_WEEK]
    assert defs.resolve_schedule_def("isales_file_servers_schedule").cron_schedule == "40 3 * * *"


def test_schema_drift_is_typed_or_rejected_never_silently_pruned(
    simulator: RecordingSimulator, sim: ThreadedServer, warehouse_url: str, db: psycopg.Connection
) -> None:
    assert run(assets.dim_isales_file_server, warehouse_url, vdn_ids="1").success
    # Drift: operTime as epoch ms and request as an object; serverId renamed serverID.
    simulator.state.faults.arm(CALLLOGS, Fault("drift", times=-1))
    simulator.state.faults.arm(
        "/rest/isales/v1/openapi/campaigns/{vdnId}/file/queryServer", Fault("drift", times=-1)
    )
    calls = run(assets.fact_isales_api_call, warehouse_url, CLOSED_WEEK, vdn_ids="1")
    assert calls.success and checks(calls)["no_rejects"]
    assert db.execute(
        "SELECT count(*), count(*) FILTER (WHERE oper_time = to_timestamp(left(id, 13)::bigint / 1000.0)), "
        "count(*) FILTER (WHERE jsonb_typeof(request) = 'object') + count(request_raw) "
        "FROM core.fact_isales_api_call"
    ).fetchone() == (350, 350, 350)
    servers = run(assets.dim_isales_file_server, warehouse_url, vdn_ids="1")
    assert servers.success and checks(servers) == {
        "no_rejects": False,
        # the renamed key leaves its records keyless: in raw.rejects, not in raw
        "unexpected_fields": True,
        "no_mass_disappearance": True,
    }
    assert (
        db.execute("SELECT count(*) FROM raw.rejects WHERE partition_key = 'snapshot/vdn-1'").fetchone()[0]
        == 5
    )
    # Unreadable records are no proof the servers are gone.
    assert (
        db.execute("SELECT count(*) FROM core.dim_isales_file_server WHERE _gone_at IS NULL").fetchone()[0]
        == 5
    )
