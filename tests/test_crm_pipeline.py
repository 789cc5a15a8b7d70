"""The CRM source end to end: simulator over real HTTP -> Dagster assets -> PostgreSQL."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from dagster import AssetCheckResult, DagsterInstance, materialize

from pipelines.defs.sources.crm import assets as crm
from pipelines.defs.sources.crm.client import CrmResource, sign
from pipelines.lib.warehouse import WarehouseResource
from tests.helpers import checks, metadata

DAY = "2026-11-20"
TZ = ZoneInfo("Asia/Shanghai")
WINDOW = (datetime(2026, 11, 20, tzinfo=TZ), datetime(2026, 11, 21, tzinfo=TZ))

CHECKSUM = """
SELECT count(*), md5(string_agg(t::text, '|' ORDER BY id))
FROM (SELECT id, created_at, call_id, conversation_id, customer_number, customer_name, province, city,
             agent_name, duration, ringing_duration, result, sp_number, call_type, seat_type, drop_side,
             hangup_cause_id, business_id, business_log_type
      FROM core.fact_crm_call) t
"""


def resources(env: dict[str, str], warehouse_url: str, **overrides: object) -> dict[str, object]:
    settings = {
        "base_url": env["CRM_BASE_URL"],
        "email": env["CRM_EMAIL"],
        "secret_key": env["CRM_SECRET_KEY"],
        "agent_ids": env["CRM_AGENT_IDS"],
        "rate_per_s": 0,
        "backoff_base_s": 0.01,
        "max_retries": 2,
        "timeout_s": 5,
        **overrides,
    }
    return {"warehouse": WarehouseResource(url=warehouse_url), "crm": CrmResource(**settings)}


def run(assets, res, partition_key=DAY, raise_on_error=True, instance=None):  # noqa: ANN001, ANN201
    return materialize(
        assets,
        partition_key=partition_key,
        resources=res,
        raise_on_error=raise_on_error,
        instance=instance or DagsterInstance.ephemeral(),
    )


@pytest.fixture
def small(simulator):  # noqa: ANN001, ANN201
    simulator.settings["crm"].volume = 250  # three pages of at most 100
    return simulator


@pytest.fixture
def env(small, sim) -> dict[str, str]:  # noqa: ANN001
    return sim.env()


def test_sign_of_a_known_input() -> None:
    # printf '1@test.cn&secret&1542192293' | sha1sum
    assert sign("1@test.cn", "secret", 1542192293) == "84f88b1552251a015bfd965493d72abc00b1d8f5"


def test_loads_a_day_across_pages_with_every_quirk_typed(env, warehouse_url, db, sim) -> None:  # noqa: ANN001
    result = run([crm.fact_crm_call], resources(env, warehouse_url))
    meta = metadata(result, "core/fact_crm_call")
    assert meta["api_total"] == 250
    assert meta["rows_landed"] == 250
    assert meta["pages"] == 3  # 100 + 100 + 50: the minimum at the largest page size
    assert sim.sim.state.requests["crm /v1/callLogs"] == 3
    assert all(checks(result)[name] for name in ("reconciles_with_api", "no_duplicate_keys", "no_rejects"))

    rows = db.execute(
        "SELECT r.record, c.sp_number, c.call_id, c.province, c.city, c.created_at "
        "FROM core.fact_crm_call c JOIN raw.crm_call r ON r.record_key = c.id::text"
    ).fetchall()
    assert len(rows) == 250
    for record, sp_number, call_id, province, city, created_at in rows:
        assert sp_number == record["spNumber"] and sp_number.startswith("0")  # leading zero kept
        assert call_id == record["callId"] and len(call_id) == 36  # a UUID string, not an int
        assert province == record["province"] and city == record["city"]  # int or null
        assert province is None or isinstance(province, int)
        local = datetime.strptime(record["createTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=TZ)
        assert created_at == local  # naive vendor time read in CRM_TIMEZONE
        assert WINDOW[0] <= created_at < WINDOW[1]
    assert any(r[3] is None for r in rows) and any(r[3] is not None for r in rows)


def test_rerun_is_idempotent(env, warehouse_url, db) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    run([crm.fact_crm_call], res)
    first = db.execute(CHECKSUM).fetchone()
    raw_first = db.execute(
        "SELECT count(*), md5(string_agg(record::text, '' ORDER BY record_key)) FROM raw.crm_call"
    ).fetchone()
    run([crm.fact_crm_call], res)
    assert db.execute(CHECKSUM).fetchone() == first
    assert (
        db.execute(
            "SELECT count(*), md5(string_agg(record::text, '' ORDER BY record_key)) FROM raw.crm_call"
        ).fetchone()
        == raw_first
    )
    assert first[0] == 250


def test_fault_mid_partition_leaves_warehouse_unchanged_and_rerun_completes(
    env, warehouse_url, db, sim
) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    run([crm.fact_crm_call], res)
    before = db.execute(CHECKSUM).fetchone()
    # A row the vendor no longer returns would be pruned by a complete pull: it must survive a failed one.
    db.execute(
        "INSERT INTO core.fact_crm_call (id, created_at, call_id, _loaded_at) VALUES (1, %s, 'gone', '2000-01-01')",
        (WINDOW[0],),
    )
    before = db.execute(CHECKSUM).fetchone()
    # Page 1 answers, then every later page is cut short: retries cannot cure it.
    httpx.post(
        f"{sim.url}/_sim/faults",
        json={"endpoint": "/v1/callLogs", "mode": "truncated", "times": -1, "after": 1},
    )
    result = run([crm.fact_crm_call], res, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "Udesk CRM /v1/callLogs" in message and "not valid JSON" in message
    assert db.execute(CHECKSUM).fetchone() == before
    assert db.execute("SELECT count(*) FROM raw.rejects").fetchone()[0] == 0

    httpx.delete(f"{sim.url}/_sim/faults")
    run([crm.fact_crm_call], res)
    after = db.execute(CHECKSUM).fetchone()
    assert after[0] == 251  # complete pull: the row the vendor never returned is kept, marked gone
    gone = db.execute("SELECT _gone_at FROM core.fact_crm_call WHERE id = 1").fetchone()[0]
    assert gone is not None
    assert db.execute("SELECT count(*) FROM core.fact_crm_call WHERE _gone_at IS NOT NULL").fetchone()[0] == 1


def test_retries_5xx_and_429_honouring_retry_after(env, warehouse_url, sim) -> None:  # noqa: ANN001
    httpx.post(
        f"{sim.url}/_sim/faults",
        json={"endpoint": "/v1/callLogs", "mode": "429", "times": 1, "retry_after": 0.3},
    )
    result = run([crm.fact_crm_call], resources(env, warehouse_url))
    meta = metadata(result, "core/fact_crm_call")
    assert meta["retries"] == 1 and meta["rows_landed"] == 250
    httpx.post(
        f"{sim.url}/_sim/faults", json={"endpoint": "/v1/callLogs", "mode": "503", "times": 2, "after": 1}
    )
    meta = metadata(run([crm.fact_crm_call], resources(env, warehouse_url)), "core/fact_crm_call")
    assert meta["retries"] == 2 and meta["rows_landed"] == 250


def test_error_envelope_is_a_typed_error_naming_code_and_meaning(env, warehouse_url, sim) -> None:  # noqa: ANN001
    httpx.post(f"{sim.url}/_sim/faults", json={"endpoint": "/v1/callLogs", "mode": "envelope", "times": -1})
    result = run([crm.fact_crm_call], resources(env, warehouse_url, max_retries=0), raise_on_error=False)
    assert not result.success
    message = str(
        next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error
    )
    assert "Udesk CRM /v1/callLogs: error 500: 系统繁忙" in message


def test_wrong_credentials_name_the_source_and_the_variables(env, warehouse_url, caplog) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-value-123"
    result = run([crm.fact_crm_call], resources(env, warehouse_url, secret_key=wrong), raise_on_error=False)
    assert not result.success
    message = str(
        next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error
    )
    assert "Udesk CRM" in message and "CRM_SECRET_KEY" in message
    assert wrong not in message


def test_no_secret_in_logs_events_or_metadata(env, warehouse_url, caplog, capfd) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    instance = DagsterInstance.ephemeral()
    run([crm.fact_crm_call, crm.fact_crm_call_recording], resources(env, warehouse_url), instance=instance)
    secret = env["CRM_SECRET_KEY"]
    out, err = capfd.readouterr()
    texts = [caplog.text, out, err]
    logs = instance.all_logs(instance.get_runs()[0].run_id)
    texts.extend(str(e) for e in logs)
    blob = "\n".join(texts)
    assert secret not in blob
    assert "sign=" not in blob  # signed query strings never reach a log line


def test_recordings_hangup_reasons_and_ivr(env, warehouse_url, db) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    run([crm.fact_crm_call, crm.fact_crm_call_recording], res)
    n, calls = db.execute(
        "SELECT count(*), count(DISTINCT call_id) FROM core.fact_crm_call_recording "
        "WHERE call_created_at >= %s AND call_created_at < %s",
        WINDOW,
    ).fetchone()
    assert n > 0 and calls <= 250
    assert (
        db.execute(
            "SELECT count(*) FROM core.fact_crm_call_recording r LEFT JOIN core.fact_crm_call c ON c.call_id = r.call_id "
            "WHERE c.id IS NULL OR c.id <> r.crm_call_id OR c.created_at <> r.call_created_at"
        ).fetchone()[0]
        == 0
    )

    materialize(
        [crm.dim_crm_hangup_reason, crm.fact_crm_call_ivr],
        resources=res,
        instance=DagsterInstance.ephemeral(),
    )
    names = dict(db.execute("SELECT id, name FROM core.dim_crm_hangup_reason").fetchall())
    assert len(names) == 18 and names[7] == "暂停服务" and names[16] == "改号"
    assert (
        db.execute("SELECT record->>'name' FROM raw.crm_hangup_reason WHERE record_key = '7'").fetchone()[0]
        == "暂停服务\t"
    )
    ivr = db.execute(
        "SELECT count(*), count(ivr_duration), count(DISTINCT master_user_id) FROM core.fact_crm_call_ivr"
    ).fetchone()
    assert ivr[0] > 0 and ivr[1] > 0 and ivr[2] == 3


def test_hangup_reason_that_disappears_is_marked_gone_not_deleted(env, warehouse_url, db) -> None:  # noqa: ANN001
    res = resources(env, warehouse_url)
    db.execute(
        "INSERT INTO core.dim_crm_hangup_reason (id, name, _loaded_at) VALUES (99, 'retired', '2020-01-01')"
    )
    materialize([crm.dim_crm_hangup_reason], resources=res, instance=DagsterInstance.ephemeral())
    gone, loaded = db.execute(
        "SELECT _gone_at, _loaded_at FROM core.dim_crm_hangup_reason WHERE id = 99"
    ).fetchone()
    assert gone is not None and loaded.year == 2020  # last seen kept
    assert (
        db.execute("SELECT count(*) FROM core.dim_crm_hangup_reason WHERE _gone_at IS NULL").fetchone()[0]
        == 18
    )


def test_schema_drift_goes_to_rejects_and_fails_the_check(env, warehouse_url, db, sim) -> None:  # noqa: ANN001
    httpx.post(f"{sim.url}/_sim/faults", json={"endpoint": "/v1/callLogs", "mode": "drift", "times": 1})
    result = run([crm.fact_crm_call], resources(env, warehouse_url))
    assert checks(result)["no_rejects"] is False
    reasons = dict(db.execute("SELECT reason, count(*) FROM raw.rejects GROUP BY 1").fetchall())
    assert sum(reasons.values()) == 100  # the drifted first page, nothing silently dropped
    assert any("createTime" in r for r in reasons)
    assert db.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0] == 150
    assert db.execute("SELECT count(*) FROM raw.crm_call").fetchone()[0] == 250  # raw keeps every record


def test_total_that_disagrees_is_flagged_and_prunes_nothing(simulator, env, warehouse_url, db) -> None:  # noqa: ANN001
    simulator.settings["crm"].total_skew = 7
    db.execute(
        "INSERT INTO core.fact_crm_call (id, created_at, call_id, _loaded_at) VALUES (1, %s, 'old', '2000-01-01')",
        (WINDOW[0],),
    )
    result = run([crm.fact_crm_call], resources(env, warehouse_url))
    assert checks(result)["reconciles_with_api"] is False
    assert metadata(result, "core/fact_crm_call")["complete_pull"] is False
    assert db.execute("SELECT count(*) FROM core.fact_crm_call WHERE id = 1").fetchone()[0] == 1


def test_unknown_enum_values_are_listed(env, warehouse_url, db) -> None:  # noqa: ANN001
    from pipelines.lib import checks as shared

    def known_enums() -> AssetCheckResult:
        with psycopg.connect(warehouse_url) as conn:
            return shared.window_checks(
                conn, "core.fact_crm_call", (), crm.CALLS.table.enums, "created_at", WINDOW
            )[2]

    run([crm.fact_crm_call], resources(env, warehouse_url))
    db.execute(
        "UPDATE core.fact_crm_call SET result = 9, seat_type = 7 WHERE id = (SELECT min(id) FROM core.fact_crm_call)"
    )
    outcome = known_enums()
    assert outcome.passed is False
    assert outcome.metadata["unknown_values"].value == {"result": {"9": 1}, "seat_type": {"7": 1}}
    assert outcome.metadata["codes_from"].value["result"] == "mart.map_crm_outcome.result"
    # The mart's mapping table is where a result code is listed: a code added there (by a
    # migration) is known to the check from then on, with nothing else to change.
    db.execute("INSERT INTO mart.map_crm_outcome VALUES (9, 'other', 'A code from the future.')")
    assert known_enums().metadata["unknown_values"].value == {"seat_type": {"7": 1}}


def test_rejects_are_settled_when_a_later_pull_types_the_records(env, warehouse_url, db, sim) -> None:  # noqa: ANN001
    httpx.post(f"{sim.url}/_sim/faults", json={"endpoint": "/v1/callLogs", "mode": "drift", "times": 1})
    run([crm.fact_crm_call], resources(env, warehouse_url))
    assert db.execute("SELECT count(*) FROM raw.rejects").fetchone()[0] == 100
    result = run([crm.fact_crm_call], resources(env, warehouse_url))
    assert checks(result)["no_rejects"] is True
    assert db.execute("SELECT count(*) FROM raw.rejects").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0] == 250
