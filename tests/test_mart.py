"""The analysts' mart (issue 13) over simulator data: every source loaded through Dagster over
real HTTP into a real PostgreSQL, then the mart assets (the hourly job, then the days it found,
as the ``mart_days`` sensor runs them); what analysts read is checked against ``core`` (read
independently, mappings restated here), against the views the KPI tables replaced (migration
0014) and against the access rules.

The warehouse is loaded once for the module (about 20 s): the tests only read it, or change it
inside a transaction they roll back.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
import pytest
from alembic import command
from alembic.config import Config
from dagster import DagsterInstance, materialize
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy import create_engine

from pipelines.definitions import build_resources
from pipelines.defs.mart import assets as mart
from pipelines.defs.mart import checks as mart_checks
from pipelines.defs.mart import days, identity, pii, state, tables
from pipelines.defs.mart.jobs import RANGE_END, RANGE_START
from pipelines.defs.sources.crm import assets as crm
from pipelines.defs.sources.isales import assets as isales
from pipelines.defs.sources.pushlog import assets as pushlog
from pipelines.defs.sources.trtc import assets as trtc
from pipelines.defs.sources.trtc import plan
from pipelines.lib import refresh, warehouse
from pipelines.lib.warehouse import WarehouseResource
from simulator import customers as sim_customers
from simulator.app import Simulator
from simulator.isales import CODES as ISALES_CODES
from simulator.server import ThreadedServer
from tests.conftest import _with_db
from tests.helpers import checks, metadata

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 15, 12, tzinfo=TZ)  # a Sunday: the week of 2026-11-09 is all there
TODAY = "2026-11-16"  # what the README's examples read as current_date: the Monday after
WEEK = "2026-11-09"
CRM_DAYS = ["2026-11-12", "2026-11-13", "2026-11-14"]
KPI_DAY = "2026-11-13"
KEY = "test-pii-key-0123456789"
README = Path(__file__).resolve().parents[1] / "README.md"

# The mappings, restated from the README (not read from the warehouse).
CRM_DIRECTION = {1: "inbound", 2: "outbound", 3: "auto_outbound"}
CRM_OUTCOME = {1: "answered", 2: "no_answer_customer", 3: "no_answer_agent", 4: "rejected", 5: "answered"}
CRM_SIDE = {1: "customer", 2: "agent"}
TRTC_OUTCOME = {
    "normal_end": "answered",
    "interrupt": "interrupted",
    "not_answer": "no_answer_agent",
    "reject": "rejected",
    "cancel": "cancelled",
    "call_busy": "busy",
    "offline": "other",
}
ANSWERED = {"answered", "interrupted"}


def normalize(number: str) -> str | None:
    """The simulator's number forms, by hand: +86/0086 prefixes, spaces; mobiles only."""
    digits = re.sub(r"[\s-]", "", number)
    digits = re.sub(r"^(\+86|0086)", "", digits)
    return "+86" + digits if re.fullmatch(r"1[3-9]\d{9}", digits) else None


# ------------------------------------------------------------------------------------------
# the loaded warehouse


@pytest.fixture(scope="module")
def loaded(pg_admin_url: str, template_db: str) -> Iterator[dict]:
    name = f"ccw_mart_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    url = _with_db(pg_admin_url, name)
    simulator = Simulator()
    simulator.settings["crm"].volume = 200
    simulator.settings["trtc"].volume = 200
    simulator.settings["isales"].volume = 30
    simulator.settings["pushlog"].volume = 100
    simulator.state.clock.set(now=NOW.timestamp(), auth_wall=True)
    mp = pytest.MonkeyPatch()
    server = ThreadedServer(simulator).start()
    try:
        mp.setattr(plan, "vendor_now", lambda: NOW.timestamp())
        mp.setattr(refresh, "utc_now", lambda: NOW.astimezone(UTC))
        for key, value in server.env().items():
            mp.setenv(key, value)
        for source in ("CRM", "ISALES", "PUSHLOG", "TRTC"):
            mp.setenv(f"{source}_RATE_PER_S", "0")
        mp.setenv("WAREHOUSE_URL", url)
        resources = {
            **build_resources(),
            "warehouse": WarehouseResource(url=url),
            "customers": pii.CustomersResource(hash_key=KEY, identity_file=str(pii.DEMO_IDENTITY_FILE)),
        }

        def run(assets: list, partition: str | None = None, tags: dict | None = None):  # noqa: ANN202
            return materialize(
                assets,
                partition_key=partition,
                resources=resources,
                instance=DagsterInstance.ephemeral(),
                tags=tags,
            )

        for day in CRM_DAYS:
            run([crm.fact_crm_call, crm.fact_crm_call_recording], day)
        run([crm.dim_crm_hangup_reason])
        run(trtc.ASSETS, WEEK)
        run([isales.fact_isales_api_call], WEEK)
        run([pushlog.fact_push_log], "2026-11-01")
        mart_run = run([mart.customer_identity, mart.customer_key, mart.mart_views])
        # What the mart_days sensor does with the days the run found: one run per stretch.
        touched = metadata(mart_run, "mart/calls")["days_touched"]
        keys = mart.reporting_daily.get_partition_keys()
        table_runs = [
            run([tables.mart_tables], tags={RANGE_START: first, RANGE_END: last})
            for first, last in days.day_ranges(touched, keys)
        ]
        kpi_run = run([mart.daily_kpis], KPI_DAY)
        yield {
            "url": url,
            "mart_run": mart_run,
            "table_runs": table_runs,
            "touched": touched,
            "kpi_run": kpi_run,
            "resources": resources,
        }
    finally:
        server.stop()
        mp.undo()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def wh(loaded: dict) -> Iterator[psycopg.Connection]:
    with psycopg.connect(loaded["url"], autocommit=True) as conn:
        yield conn


def frame(conn: psycopg.Connection, query: str, params: dict | None = None) -> pd.DataFrame:
    cur = conn.execute(query, params)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def core_calls(conn: psycopg.Connection) -> pd.DataFrame:
    """Every call from core, mapped here by hand: source, started, answered, outcome, ..."""
    crm_rows = frame(
        conn,
        "SELECT id::text AS source_call_id, created_at AS started_at, call_type, result, duration, "
        "ringing_duration, agent_name, drop_side, hangup_cause_id, customer_number FROM core.fact_crm_call",
    )
    crm_rows["source"] = "crm"
    crm_rows["direction"] = crm_rows["call_type"].map(CRM_DIRECTION)
    crm_rows["outcome"] = crm_rows["result"].map(CRM_OUTCOME).fillna("other")
    crm_rows["duration_s"] = crm_rows["duration"]
    crm_rows["subject"] = crm_rows["customer_number"].map(normalize)
    trtc_rows = frame(
        conn,
        "SELECT call_id AS source_call_id, started_at, accepted_at, ended_at, call_result, caller "
        "FROM core.fact_trtc_call",
    )
    trtc_rows["source"] = "trtc"
    trtc_rows["direction"] = "in_app"
    trtc_rows["outcome"] = trtc_rows["call_result"].map(TRTC_OUTCOME).fillna("other")
    answered = trtc_rows["outcome"].isin(ANSWERED)
    trtc_rows["duration_s"] = 0
    trtc_rows.loc[answered, "duration_s"] = (
        (trtc_rows.loc[answered, "ended_at"] - trtc_rows.loc[answered, "accepted_at"])
        .dt.total_seconds()
        .astype(int)
    )
    mapped = dict(sim_customers.APP_USERS)
    trtc_rows["subject"] = [
        normalize(mapped.get(c, c)) or f"app:{c}" if c is not None else None for c in trtc_rows["caller"]
    ]
    out = pd.concat([crm_rows, trtc_rows], ignore_index=True)
    out["answered"] = out["outcome"].isin(ANSWERED)
    out["day"] = out["started_at"].dt.tz_convert(TZ).dt.date
    out["hour"] = out["started_at"].dt.tz_convert(TZ).dt.hour
    return out


# ------------------------------------------------------------------------------------------
# pieces that need no loaded warehouse


def test_normalize_phone_gives_one_form(db: psycopg.Connection) -> None:
    cases = {
        "+86 138 1234 5678": "+8613812345678",
        "0086-13812345678": "+8613812345678",
        "8613812345678": "+8613812345678",
        "13812345678": "+8613812345678",
        "013812345678": "+8613812345678",
        "(021) 1234-5678": "+862112345678",
        "+86 21 12345678": "+862112345678",
        "0755 8601 3388": "+8675586013388",
        "zhangwei_12": None,
        "12345678": None,
        "+1 415 555 0100": None,
        "": None,
    }
    got = dict(
        db.execute("SELECT x, core.normalize_phone(x) FROM unnest(%s::text[]) x", (list(cases),)).fetchall()
    )
    assert got == cases
    assert db.execute(
        "SELECT core.app_user_subject('u_1', '+86 138 1234 5678'), core.app_user_subject('0086 13812345678', NULL), "
        "core.app_user_subject('liwei.7', NULL), core.app_user_subject(NULL, NULL)"
    ).fetchone() == ("+8613812345678", "+8613812345678", "app:liwei.7", None)


def test_customer_key_in_sql_is_the_hmac_of_the_subject(db: psycopg.Connection) -> None:
    subjects = ["+8613812345678", "app:liwei.7", "app:" + "x" * 200]
    for key in (b"k", b"a-key-longer-than-the-block-" * 4):
        query = f"SELECT s, {pii.CUSTOMER_KEY_SQL.format(subject='s')} FROM unnest(%(s)s::text[]) s"
        got = dict(db.execute(query, {**pii.pads(key), "s": subjects}).fetchall())
        assert got == {s: pii.customer_key(key, s) for s in subjects}
        assert all(len(v) == 22 and re.fullmatch(r"[A-Za-z0-9_-]+", v) for v in got.values())


def test_key_is_required_outside_the_demo_and_the_demo_key_is_announced_once(caplog) -> None:  # noqa: ANN001
    with pytest.raises(pii.PiiConfigError, match="PII_HASH_KEY"):
        pii.CustomersResource().key(demo=False)
    assert pii.CustomersResource(hash_key="k").key(demo=True) == (b"k", "PII_HASH_KEY")
    pii._demo_logged.clear()
    with caplog.at_level(logging.WARNING, logger=pii.__name__):
        for _ in range(3):
            assert pii.CustomersResource().key(demo=True) == (pii.DEMO_KEY.encode(), "demo key")
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "DEMO" in caplog.records[0].getMessage() and len(caplog.records) == 1


def test_identity_file_defaults_to_the_demo_file_on_the_demo_only(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.delenv("PII_HASH_KEY", raising=False)
    monkeypatch.delenv("CUSTOMER_IDENTITY_FILE", raising=False)
    resource = pii.CustomersResource.from_env()
    assert resource.hash_key is None and resource.identity_path(demo=False) is None
    assert resource.identity_path(demo=True) == pii.DEMO_IDENTITY_FILE
    monkeypatch.setenv("CUSTOMER_IDENTITY_FILE", "/nonexistent/ids.csv")
    with pytest.raises(pii.PiiConfigError, match="CUSTOMER_IDENTITY_FILE"):
        pii.CustomersResource.from_env().identity_path(demo=True)


def test_the_embedded_warehouse_is_the_demo_and_any_other_needs_the_key(
    warehouse_url: str,
    db: psycopg.Connection,
    monkeypatch,  # noqa: ANN001
) -> None:
    db.execute(
        "INSERT INTO core.fact_crm_call (id, created_at, call_id, customer_number, _loaded_at) "
        "VALUES (1, now(), 'a', '13812345678', now())"
    )
    resources = {"warehouse": WarehouseResource(url=warehouse_url), "customers": pii.CustomersResource()}

    def key_run():  # noqa: ANN202
        return materialize(
            [mart.customer_key],
            resources=resources,
            instance=DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    monkeypatch.setenv("WAREHOUSE_DIR", "/nonexistent/warehouse")
    assert pii.is_embedded_warehouse(db) is False
    failed = key_run()
    assert not failed.success
    error = str(failed.get_step_failure_events()[0].event_specific_data.error)
    assert "PII_HASH_KEY" in error
    data_dir = db.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()[0]
    monkeypatch.setenv("WAREHOUSE_DIR", data_dir)  # this server stands for the demo's .warehouse/
    assert pii.is_embedded_warehouse(db) is True
    assert metadata(key_run(), "core/customer_key")["key"] == "demo key"
    assert db.execute("SELECT customer_key FROM core.customer_key").fetchone() == (
        pii.customer_key(pii.DEMO_KEY.encode(), "+8613812345678"),
    )


def test_demo_identity_file_is_the_simulators_app_users() -> None:
    parsed = identity.read(pii.DEMO_IDENTITY_FILE)
    assert {k: normalize(v) for k, v in parsed.rows.items()} == {
        k: normalize(v) for k, v in sim_customers.APP_USERS
    }
    assert parsed.duplicates == parsed.blank == 0


def test_identity_file_errors_name_the_file_not_the_values(tmp_path: Path) -> None:
    bad = tmp_path / "ids.csv"
    bad.write_text("user,phone\nu_1,13812345678\n")
    with pytest.raises(identity.IdentityFileError) as err:
        identity.read(bad)
    assert "ids.csv" in str(err.value) and "13812345678" not in str(err.value)
    good = tmp_path / "ok.csv"
    with good.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerows(
            [["app_user_id", "phone_number"], ["u_1", "13812345678"], ["u_1", "13900000000"], ["u_2", ""]]
        )
    parsed = identity.read(good)
    assert parsed.rows == {"u_1": "13812345678"} and parsed.duplicates == 1 and parsed.blank == 1


def test_a_new_key_rekeys_every_customer(warehouse_url: str, db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO core.fact_crm_call (id, created_at, call_id, customer_number, _loaded_at) VALUES "
        "(1, now(), 'a', '+86 138 1234 5678', now()), (2, now(), 'b', '13812345678', now()), "
        "(3, now(), 'c', '15000000001', now())"
    )

    def key_run(key: str):  # noqa: ANN202
        return materialize(
            [mart.customer_key],
            resources={
                "warehouse": WarehouseResource(url=warehouse_url),
                "customers": pii.CustomersResource(hash_key=key),
            },
            instance=DagsterInstance.ephemeral(),
        )

    first = metadata(key_run("first-secret-key"), "core/customer_key")
    assert first["keyed_now"] == 2 and first["full_rekey"] and first["key"] == "PII_HASH_KEY"
    again = metadata(key_run("first-secret-key"), "core/customer_key")
    assert again["keyed_now"] == 0 and not again["full_rekey"]  # only new customers are hashed
    db.execute(
        "INSERT INTO core.fact_crm_call (id, created_at, call_id, customer_number, _loaded_at) VALUES "
        "(4, now(), 'd', '15000000002', now())"
    )
    later = metadata(key_run("first-secret-key"), "core/customer_key")
    assert later["keyed_now"] == 1 and not later["full_rekey"]  # the calls loaded since the last run
    key_run("second-secret-key")
    rows = dict(db.execute("SELECT subject, customer_key FROM core.customer_key").fetchall())
    assert rows == {
        s: pii.customer_key(b"second-secret-key", s)
        for s in ("+8613812345678", "+8615000000001", "+8615000000002")
    }
    assert "first-secret-key" not in str(first)


# ------------------------------------------------------------------------------------------
# the loaded mart


def test_mart_materialization_passes_its_checks_and_counts_rows(loaded: dict, wh: psycopg.Connection) -> None:
    result = loaded["mart_run"]
    assert checks(result) == {"customers_keyed": True, "codes_mapped": True, "no_phone_numbers": True}
    # The days the loads touched: every day with a call, a push or an API call.
    days_with_rows = {
        str(d)
        for (d,) in wh.execute(
            "SELECT DISTINCT (t AT TIME ZONE 'Asia/Shanghai')::date FROM (SELECT created_at AS t FROM "
            "core.fact_crm_call UNION ALL SELECT started_at FROM core.fact_trtc_call UNION ALL SELECT create_time "
            "FROM core.fact_push_log UNION ALL SELECT oper_time FROM core.fact_isales_api_call) f"
        ).fetchall()
    }
    assert set(loaded["touched"]) == days_with_rows
    written: Counter = Counter()
    for run in loaded["table_runs"]:
        assert set(checks(run).values()) == {True}
        for table in days.TABLES:
            written[table] += metadata(run, f"mart/{table}")["rows_written"]
    for table in days.DAY_TABLES:
        count = wh.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("mart", table))
        ).fetchone()[0]
        assert written[table] == count > 0
    assert wh.execute("SELECT count(*) FROM mart.customers").fetchone()[0] > 0
    keys = metadata(result, "core/customer_key")
    assert keys["key"] == "PII_HASH_KEY" and keys["keyed_now"] > 0
    assert metadata(result, "core/customer_identity")["dagster/row_count"] == len(sim_customers.APP_USERS)
    # A second run finds only the last hour's loads again (the overlap), keys no one new.
    again = materialize(
        [mart.customer_identity, mart.customer_key, mart.mart_views],
        resources=loaded["resources"],
        instance=DagsterInstance.ephemeral(),
    )
    assert metadata(again, "core/customer_key")["keyed_now"] == 0


def test_mapping_tables_hold_the_documented_mappings(wh: psycopg.Connection) -> None:
    assert (
        dict(wh.execute("SELECT call_type, direction FROM mart.map_crm_direction").fetchall())
        == CRM_DIRECTION
    )
    assert dict(wh.execute("SELECT result, outcome FROM mart.map_crm_outcome").fetchall()) == CRM_OUTCOME
    assert (
        dict(wh.execute("SELECT drop_side, hangup_side FROM mart.map_crm_hangup_side").fetchall()) == CRM_SIDE
    )
    assert (
        dict(wh.execute("SELECT call_result, outcome FROM mart.map_trtc_outcome").fetchall()) == TRTC_OUTCOME
    )
    assert dict(wh.execute("SELECT call_type, direction FROM mart.map_trtc_direction").fetchall()) == {
        "single": "in_app",
        "group": "in_app",
    }
    outcomes = dict(wh.execute("SELECT outcome, answered FROM mart.map_outcome").fetchall())
    assert {o for o, a in outcomes.items() if a} == ANSWERED and set(outcomes) >= set(TRTC_OUTCOME.values())
    push = dict(wh.execute("SELECT push_type, name FROM mart.map_push_type").fetchall())
    assert push == dict(wh.execute("SELECT type, name FROM core.dim_push_type").fetchall())
    codes = dict(wh.execute("SELECT result_code, is_success FROM mart.map_isales_result_code").fetchall())
    assert codes == {"0200000": True, **dict.fromkeys(ISALES_CODES, False)}
    # Every mapping table and column explains itself; the README lists every table.
    tables = [
        r[0] for r in wh.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'mart'").fetchall()
    ]
    readme = README.read_text()
    for table in tables:
        assert table in readme
        assert wh.execute("SELECT obj_description(%s::regclass)", (f"mart.{table}",)).fetchone()[0]


def test_every_mart_relation_and_column_has_a_comment_and_dagster_shows_the_same(
    loaded: dict, wh: psycopg.Connection
) -> None:
    rows = wh.execute(
        """
        SELECT c.relname, c.relkind, obj_description(c.oid), a.attname, format_type(a.atttypid, a.atttypmod),
               col_description(c.oid, a.attnum)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE n.nspname = 'mart' AND c.relkind IN ('r', 'v') ORDER BY c.relname, a.attnum
        """
    ).fetchall()
    assert [r for r in rows if not r[2] or not r[5]] == []
    in_db: dict[str, list] = defaultdict(list)
    for relname, _, _, col, typ, text in rows:
        in_db[relname].append((col, typ, text))
    shown = {}
    for run in [loaded["mart_run"], *loaded["table_runs"][:1]]:
        for event in run.get_asset_materialization_events():
            meta = event.materialization.metadata
            if "dagster/column_schema" in meta:
                shown[event.asset_key.path[-1]] = [
                    (c.name, c.type, c.description) for c in meta["dagster/column_schema"].schema.columns
                ]
    assert set(shown) == {*mart.VIEW_DEPS, *days.TABLES}
    assert shown == {relation: in_db[relation] for relation in shown}
    kinds = {relname: kind for relname, kind, *_ in rows}
    assert {r for r in shown if kinds[r] == "v"} == set(mart.VIEW_DEPS)


def test_calls_hold_every_crm_and_trtc_call_mapped(wh: psycopg.Connection) -> None:
    expected = core_calls(wh).set_index(["source", "source_call_id"]).sort_index()
    got = frame(wh, "SELECT * FROM mart.calls").set_index(["source", "source_call_id"]).sort_index()
    assert list(got.index) == list(expected.index)
    assert set(got.index.get_level_values(0)) == {"crm", "trtc"}
    assert (got["direction"] == expected["direction"]).all()
    assert (got["outcome"] == expected["outcome"]).all()
    assert (got["answered_at"].notna() == expected["answered"]).all()
    assert (got["duration_s"] == expected["duration_s"]).all()
    assert not got["is_deleted"].any()
    crm_got, crm_exp = got.loc["crm"], expected.loc["crm"]
    assert (crm_got["agent"].fillna("-") == crm_exp["agent_name"].fillna("-")).all()
    assert (crm_got["hangup_side"].fillna("-") == crm_exp["drop_side"].map(CRM_SIDE).fillna("-")).all()
    answered = crm_got["answered_at"].notna()
    assert (
        crm_got.loc[answered, "answered_at"]
        == crm_exp.loc[answered, "started_at"]
        + pd.to_timedelta(crm_exp.loc[answered, "ringing_duration"], unit="s")
    ).all()
    # hangup causes: the reason's trimmed name, NULL for an id outside the list
    names = dict(wh.execute("SELECT id, name FROM core.dim_crm_hangup_reason").fetchall())
    assert (crm_got["hangup_cause"].fillna("-") == crm_exp["hangup_cause_id"].map(names).fillna("-")).all()
    assert (
        crm_got["hangup_cause"].notna().any()
        and not crm_got["hangup_cause"].fillna("").str.endswith("\t").any()
    )
    recordings = dict(
        wh.execute(
            "SELECT f.id::text, count(r.*) FROM core.fact_crm_call f LEFT JOIN "
            "core.fact_crm_call_recording r ON r.call_id = f.call_id GROUP BY 1"
        ).fetchall()
    )
    assert crm_got["recordings"].to_dict() == recordings and crm_got["recordings"].max() > 0
    assert got.loc["trtc", "recordings"].isna().all()
    # the customer: HMAC of the normalized number (TRTC: of the caller, through the identity map)
    want = expected["subject"].map(lambda s: pii.customer_key(KEY.encode(), s) if s else None)
    assert (got["customer_key"].fillna("-") == want.fillna("-")).all()
    last4 = expected["subject"].map(lambda s: s[-4:] if s and s.startswith("+") else None)
    assert (got["customer_last4"].fillna("-") == last4.fillna("-")).all()
    assert got["customer_key"].notna().all()


def test_is_deleted_exposes_gone_at_and_kpi_views_leave_deleted_calls_out(wh: psycopg.Connection) -> None:
    day_of = "(started_at AT TIME ZONE 'Asia/Shanghai')::date"
    with wh.transaction(force_rollback=True):
        call_id = wh.execute("SELECT id FROM core.fact_crm_call ORDER BY id LIMIT 1").fetchone()[0]
        day = wh.execute(
            f"SELECT {day_of} FROM mart.calls WHERE source = 'crm' AND source_call_id = %s", (str(call_id),)
        ).fetchone()[0]
        before = wh.execute(
            "SELECT sum(calls) FROM mart.call_daily WHERE day = %s AND source = 'crm'", (day,)
        ).fetchone()[0]
        wh.execute("UPDATE core.fact_crm_call SET _gone_at = now() WHERE id = %s", (call_id,))
        assert wh.execute(
            "SELECT is_deleted FROM mart.calls WHERE source = 'crm' AND source_call_id = %s", (str(call_id),)
        ).fetchone() == (True,)
        # The deletion is among the rows loaded since the watermark: its day is written again.
        assert day in days.touched_days(wh, datetime.now(UTC) - timedelta(minutes=1), "Asia/Shanghai")
        days.write_day(wh, day, *mart.day_bounds(day, "Asia/Shanghai"), "Asia/Shanghai")
        assert (
            wh.execute(
                "SELECT sum(calls) FROM mart.call_daily WHERE day = %s AND source = 'crm'", (day,)
            ).fetchone()[0]
            == before - 1
        )


def test_call_views_aggregate_calls_in_the_reporting_zone(wh: psycopg.Connection) -> None:
    calls = core_calls(wh)
    daily = frame(wh, "SELECT * FROM mart.call_daily").set_index(["day", "source", "direction"]).sort_index()
    grouped = calls.groupby(["day", "source", "direction"])
    assert daily["calls"].to_dict() == grouped.size().to_dict()
    assert daily["answered"].to_dict() == grouped["answered"].sum().to_dict()
    ans = calls[calls["answered"]].groupby(["day", "source", "direction"])["duration_s"]
    for stat, col in ((ans.median(), "p50_duration_s"), (ans.quantile(0.9), "p90_duration_s")):
        got = daily[col].dropna().astype(float)
        assert list(got.index) == list(stat.index)
        assert abs(got.to_numpy() - stat.to_numpy(dtype=float)).max() <= 0.05 + 1e-9  # one decimal
    assert (daily["answer_rate"].astype(float) - daily["answered"] / daily["calls"]).abs().max() < 5e-5
    assert set(daily.index.get_level_values("day")) == set(calls["day"])  # Shanghai days, not UTC days

    hourly = frame(wh, "SELECT day, hour, source, direction, calls FROM mart.call_hourly")
    assert hourly.set_index(["day", "hour", "source", "direction"])["calls"].sort_index().to_dict() == (
        calls.groupby(["day", "hour", "source", "direction"]).size().to_dict()
    )
    agents = frame(wh, "SELECT day, agent, calls, answered, talk_s FROM mart.agent_daily").set_index(
        ["day", "agent"]
    )
    crm_calls = calls[(calls["source"] == "crm") & calls["agent_name"].notna()]
    g = crm_calls.groupby(["day", "agent_name"])
    assert agents["calls"].to_dict() == g.size().to_dict()
    assert (
        agents["talk_s"].to_dict()
        == crm_calls[crm_calls["answered"]]
        .groupby(["day", "agent_name"])["duration_s"]
        .sum()
        .reindex(g.size().index, fill_value=0)
        .astype(int)
        .to_dict()
    )
    causes = frame(
        wh,
        "SELECT source, outcome, hangup_cause, sum(calls) AS n FROM mart.hangup_cause_daily GROUP BY 1, 2, 3",
    )
    assert causes["n"].sum() == len(calls)
    names = dict(wh.execute("SELECT id, name FROM core.dim_crm_hangup_reason").fetchall())
    no_answer = calls[(calls["source"] == "crm") & (calls["outcome"] == "no_answer_customer")]
    want = Counter(no_answer["hangup_cause_id"].map(names).dropna())
    got = causes[(causes["outcome"] == "no_answer_customer") & causes["hangup_cause"].notna()]
    assert dict(zip(got["hangup_cause"], got["n"], strict=True)) == dict(want)


def test_push_and_api_views_aggregate_their_facts(wh: psycopg.Connection) -> None:
    pushes = frame(wh, "SELECT create_time, type, result, latency_ms, retry FROM core.fact_push_log")
    pushes["day"] = pushes["create_time"].dt.tz_convert(TZ).dt.date
    daily = frame(wh, "SELECT * FROM mart.push_delivery_daily").set_index(["day", "push_type"]).sort_index()
    g = pushes.groupby(["day", "type"])
    assert daily["deliveries"].to_dict() == g.size().to_dict()
    assert daily["succeeded"].to_dict() == g["result"].apply(lambda r: int((r == 1).sum())).to_dict()
    p95 = g["latency_ms"].quantile(0.95)
    assert list(daily.index) == list(p95.index)
    assert abs(daily["latency_p95_ms"].to_numpy(dtype=float) - p95.to_numpy(dtype=float)).max() <= 0.05 + 1e-9
    assert daily["retries"].to_dict() == g["retry"].apply(lambda r: int(r[r > 0].sum())).to_dict()
    assert daily["push_type_name_en"].notna().all() and daily["push_type_name"].notna().all()

    api = frame(wh, "SELECT oper_time, vdn_id, url, result_code FROM core.fact_isales_api_call")
    api["day"] = api["oper_time"].dt.tz_convert(TZ).dt.date
    api["url_pattern"] = [
        re.sub(r"/\d+(?=/|$)", "/{id}", re.sub(r"/campaigns/\d+", "/campaigns/{vdnId}", u))
        for u in api["url"]
    ]
    usage = (
        frame(wh, "SELECT * FROM mart.api_usage_daily")
        .set_index(["day", "vdn_id", "url_pattern"])
        .sort_index()
    )
    g = api.groupby(["day", "vdn_id", "url_pattern"])
    assert usage["calls"].to_dict() == g.size().to_dict()
    assert (
        usage["errors"].to_dict() == g["result_code"].apply(lambda r: int((r != "0200000").sum())).to_dict()
    )
    per_code: dict = defaultdict(Counter)
    for key, code in zip(
        api[["day", "vdn_id", "url_pattern"]].itertuples(index=False), api["result_code"], strict=True
    ):
        per_code[tuple(key)][code] += 1
    assert usage["result_codes"].to_dict() == {k: dict(v) for k, v in per_code.items()}
    assert usage["errors"].sum() > 0
    assert not usage.index.get_level_values("url_pattern").str.contains(r"\d{3}").any()


def readme_examples() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text[text.index("### Ten example queries") :]
    blocks = re.findall(r"```sql\n(-- (\d+)\. .*?)```", section, flags=re.S)
    return [(n, block) for block, n in blocks]


def test_readme_has_ten_numbered_examples() -> None:
    assert [n for n, _ in readme_examples()] == [str(i) for i in range(1, 11)]


@pytest.mark.parametrize("number", [str(i) for i in range(1, 11)])
def test_readme_example(number: str, wh: psycopg.Connection) -> None:
    query = dict(readme_examples())[number].replace("current_date", f"DATE '{TODAY}'")
    got = frame(wh, query)
    assert len(got) > 0
    calls = core_calls(wh)
    calls = calls[~calls.get("is_deleted", pd.Series(False, index=calls.index))]
    check = EXPECTED[number]
    check(got, calls, wh)


def _ex1(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    week = calls[(calls["day"] >= pd.Timestamp(WEEK).date()) & (calls["day"] < pd.Timestamp(TODAY).date())]
    g = week.groupby(["day", "source"])
    want = pd.DataFrame({"answered": g["answered"].sum(), "calls": g.size()}).reset_index()
    assert got[["day", "source", "answered", "calls"]].to_dict("records") == want.to_dict("records")
    assert set(got["source"]) == {"crm", "trtc"} and len(set(got["day"])) == 7


def _ex2(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    pushes = frame(wh, "SELECT type, latency_ms FROM core.fact_push_log")
    p95 = pushes.groupby("type")["latency_ms"].quantile(0.95).astype(float)
    assert dict(zip(got["push_type"], got["latency_p95_ms"].round(3), strict=True)) == p95.round(3).to_dict()
    assert list(got["latency_p95_ms"]) == sorted(got["latency_p95_ms"], reverse=True)
    assert got["deliveries"].sum() == len(pushes)


def _ex3(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    api = frame(wh, "SELECT oper_time, url, result_code FROM core.fact_isales_api_call")
    api = api[api["oper_time"].dt.tz_convert(TZ).dt.date >= (pd.Timestamp(TODAY) - timedelta(days=7)).date()]
    api["p"] = [
        re.sub(r"/\d+(?=/|$)", "/{id}", re.sub(r"/campaigns/\d+", "/campaigns/{vdnId}", u))
        for u in api["url"]
    ]
    errors = api[api["result_code"] != "0200000"].groupby("p").size().sort_index()
    top = sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert list(zip(got["url_pattern"], got["errors"], strict=True)) == top


def _ex4(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    crm = set(calls.loc[calls["source"] == "crm", "subject"].dropna())
    trtc = set(calls.loc[calls["source"] == "trtc", "subject"].dropna())
    both = crm & trtc
    assert got["customers"].tolist() == [len(both)]
    assert len(both) >= 3  # the demo data answers the question
    # through a number written as a TRTC user id, and through the identity map
    app_phones = {normalize(p) for _, p in sim_customers.APP_USERS}
    assert both & app_phones and both - app_phones


def _ex5(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    per_hour = calls.groupby("hour").size()
    top = sorted(per_hour.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    assert list(zip(got["hour"], got["calls"], strict=True)) == top


def _ex6(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    crm = calls[(calls["source"] == "crm") & calls["agent_name"].notna()]
    g = crm.groupby("agent_name")
    assert dict(zip(got["agent"], got["calls"], strict=True)) == g.size().to_dict()
    assert list(got["answer_rate"]) == sorted(got["answer_rate"], reverse=True)
    rates = (g["answered"].sum() / g.size()).round(4)
    assert {a: float(r) for a, r in zip(got["agent"], got["answer_rate"], strict=True)} == pytest.approx(
        rates.to_dict()
    )


def _ex7(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    names = dict(wh.execute("SELECT id, name FROM core.dim_crm_hangup_reason").fetchall())
    no_answer = calls[(calls["source"] == "crm") & (calls["outcome"] == "no_answer_customer")]
    counts = Counter(no_answer["hangup_cause_id"].map(names).dropna())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    assert list(zip(got["hangup_cause"], got["calls"], strict=True)) == top


def _ex8(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    want = calls.groupby(["source", "outcome"]).size().to_dict()
    assert {(s, o): n for s, o, n in got[["source", "outcome", "calls"]].itertuples(index=False)} == want
    assert set(got.loc[got["source"] == "trtc", "outcome"]) >= {
        "answered",
        "interrupted",
        "cancelled",
        "other",
    }


def _ex9(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    g = calls[calls["answered"]].groupby("direction")["duration_s"]
    assert dict(zip(got["direction"], got["answered"], strict=True)) == g.size().to_dict()
    assert (
        dict(zip(got["direction"], got["p90_s"].round(6), strict=True))
        == g.quantile(0.9).astype(float).round(6).to_dict()
    )
    assert set(got["direction"]) == {"inbound", "outbound", "auto_outbound", "in_app"}


def _ex10(got: pd.DataFrame, calls: pd.DataFrame, wh: psycopg.Connection) -> None:
    codes = Counter(r[0] for r in wh.execute("SELECT result_code FROM core.fact_isales_api_call").fetchall())
    codes.pop("0200000")
    assert dict(zip(got["result_code"], got["calls"], strict=True)) == dict(codes)
    assert dict(zip(got["result_code"], got["meaning_en"], strict=True)) == {
        c: ISALES_CODES[c][1] for c in codes
    }


EXPECTED = {
    str(i): f for i, f in enumerate((_ex1, _ex2, _ex3, _ex4, _ex5, _ex6, _ex7, _ex8, _ex9, _ex10), start=1)
}


def test_daily_kpis_record_the_days_calls_and_rates(loaded: dict, wh: psycopg.Connection) -> None:
    meta = metadata(loaded["kpi_run"], "mart/daily_kpis")
    day = datetime.fromisoformat(KPI_DAY).date()
    calls, answered = wh.execute(
        "SELECT sum(calls), sum(answered) FROM mart.call_daily WHERE day = %s", (day,)
    ).fetchone()
    deliveries, succeeded = wh.execute(
        "SELECT sum(deliveries), sum(succeeded) FROM mart.push_delivery_daily WHERE day = %s", (day,)
    ).fetchone()
    assert meta["calls"] == calls > 0 and meta["push_deliveries"] == deliveries > 0
    assert meta["answer_rate"] == pytest.approx(float(answered / calls), abs=1e-4)
    assert meta["push_success_rate"] == pytest.approx(float(succeeded / deliveries), abs=1e-4)
    assert (
        "calls: crm" in meta["summary"] and "calls: trtc" in meta["summary"] and "pushes" in meta["summary"]
    )


PHONE = re.compile(mart_checks.PHONE_LIKE)


def test_no_value_in_mart_looks_like_a_phone_number_or_is_a_user_id(wh: psycopg.Connection) -> None:
    assert mart_checks.phone_like_counts(wh) == dict.fromkeys(mart_checks.phone_like_counts(wh), 0)
    assert len(mart_checks.phone_like_counts(wh)) >= 10  # every view and table with text was scanned
    # Every number and user id of core, in every written form, against every value of mart.
    pii_values = {
        v
        for (v,) in wh.execute(
            "SELECT customer_number FROM core.fact_crm_call UNION SELECT caller FROM core.fact_trtc_call "
            "UNION SELECT callee FROM core.fact_trtc_call_callee UNION SELECT phone_number FROM core.customer_identity "
            "UNION SELECT app_user_id FROM core.customer_identity UNION SELECT subject FROM core.customer_key"
        ).fetchall()
        if v is not None and len(re.sub(r"\D", "", v)) >= 7 or (v is not None and re.search(r"[a-z]", v))
    }
    pii_values |= {re.sub(r"\D", "", v)[-11:] for v in pii_values if len(re.sub(r"\D", "", v)) >= 11}
    relations = [
        r[0]
        for r in wh.execute(
            "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'mart' AND c.relkind IN ('r', 'v')"
        ).fetchall()
    ]
    leaks = {}
    for relation in relations:
        for (row,) in wh.execute(
            sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier("mart", relation))
        ):
            tokens = set(re.findall(r"[+]?[A-Za-z0-9_.]+", row)) | set(re.findall(r"\d{7,}", row))
            hit = tokens & pii_values
            if hit:
                leaks[relation] = sorted(hit)[:3]
    # app ids like 'app:...' never reach mart; 'crm'/'trtc' and such are not user ids
    assert leaks == {}
    assert any(PHONE.search(v) for v in pii_values)  # the scan would have found them


def test_analyst_login_reads_mart_and_nothing_else(loaded: dict) -> None:
    login, password = f"alice_{uuid.uuid4().hex[:8]}", "a-password"
    admin = psycopg.connect(loaded["url"], autocommit=True)
    try:
        # The README's two statements.
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(login), sql.Literal(password))
        )
        admin.execute(sql.SQL("GRANT analyst TO {}").format(sql.Identifier(login)))
        admin.execute("ANALYZE core.fact_crm_call")
        assert admin.execute("SELECT count(*) FROM pg_stats WHERE schemaname = 'core'").fetchone()[0] > 0
        admin_user = admin.execute("SELECT current_user").fetchone()[0]
        admin.execute("SELECT '13812345678' AS number_in_a_query")  # stays this session's last query
        with psycopg.connect(
            make_conninfo(loaded["url"], user=login, password=password), autocommit=True
        ) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (login,)
            for view in [*mart.VIEW_DEPS, *days.TABLES, "map_outcome", "settings"]:
                conn.execute(
                    sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier("mart", view))
                ).fetchall()
            assert conn.execute("SELECT count(*) FROM mart.calls").fetchone()[0] > 0
            refused = [
                "SELECT * FROM core.fact_crm_call LIMIT 1",
                "SELECT * FROM raw.crm_call LIMIT 1",
                "SELECT * FROM core.customer_key LIMIT 1",
                "SELECT core.normalize_phone('13812345678')",
                "COPY core.fact_crm_call TO STDOUT",
                "CREATE TEMP VIEW leak AS SELECT customer_number FROM core.fact_crm_call",
                "CREATE FUNCTION pg_temp.leak() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER "
                "AS 'SELECT customer_number FROM core.fact_crm_call'",
                "CREATE VIEW public.leak AS SELECT 1 AS x",
                "CREATE VIEW mart.leak AS SELECT 1 AS x",
                "CREATE OR REPLACE VIEW mart.calls AS SELECT * FROM mart.calls",
                "INSERT INTO mart.map_outcome VALUES ('x', true, 'x')",
                "UPDATE mart.settings SET value = 'UTC'",
                "SELECT pg_read_file('postgresql.conf')",
                "SELECT lo_import('/etc/hostname')",
                "SET ROLE loader",
                "SET SESSION AUTHORIZATION postgres",
            ]
            for statement in refused:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
            # Catalog views answer, but only about what the login may read.
            assert conn.execute(
                "SELECT count(*) FROM pg_stats WHERE schemaname IN ('raw', 'core')"
            ).fetchone() == (0,)
            others = conn.execute(
                "SELECT query FROM pg_stat_activity WHERE usename = %s", (admin_user,)
            ).fetchall()
            assert others and {q for (q,) in others} == {"<insufficient privilege>"}
            denied = conn.execute(
                """
                SELECT count(*) FILTER (WHERE has_table_privilege(c.oid, 'SELECT')),
                       count(*) FILTER (WHERE n.nspname = 'mart' AND NOT has_table_privilege(c.oid, 'SELECT')),
                       bool_or(has_schema_privilege(n.oid, 'USAGE')) FILTER (WHERE n.nspname IN ('raw', 'core'))
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname IN ('raw', 'core', 'mart') AND c.relkind IN ('r', 'v', 'm', 'p')
                """
            ).fetchone()
            mart_count = conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'mart' AND c.relkind IN ('r', 'v')"
            ).fetchone()[0]
            assert denied == (mart_count, 0, False)
    finally:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))
        admin.close()


def test_roles_are_nologin_and_loader_owns_the_warehouse(wh: psycopg.Connection) -> None:
    roles = dict(
        wh.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname IN ('analyst', 'loader')"
        ).fetchall()
    )
    assert roles == {"analyst": False, "loader": False}
    owners = wh.execute(
        "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname IN ('raw', 'core', 'mart') AND c.relkind IN ('r', 'v')"
    ).fetchall()
    assert owners == [("loader",)]
    assert {
        r[0]
        for r in wh.execute(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('raw', 'core', 'mart')"
        ).fetchall()
    } == {"loader"}


def test_definitions_register_the_mart_downstream_of_the_facts() -> None:
    from dagster import AssetKey

    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    mart_keys = {k for k in graph.get_all_asset_keys() if graph.get(k).group_name == "mart"}
    assert {k.to_user_string() for k in mart_keys} == {
        "core/customer_identity",
        "core/customer_key",
        "mart/daily_kpis",
        *(f"mart/{v}" for v in mart.VIEW_DEPS),
        *(f"mart/{t}" for t in days.TABLES),
    }
    for key in mart_keys:
        node = graph.get(key)
        assert "postgres" in node.kinds and node.description
        if key != mart.KPI_KEY and key.path[-1] not in mart.VIEW_DEPS:  # views: read back when materialized
            schema = node.metadata["dagster/column_schema"]
            assert schema.columns and all(c.description for c in schema.columns)
    calls = graph.get(AssetKey(["mart", "calls"]))
    assert {
        AssetKey(["core", "fact_crm_call"]),
        AssetKey(["core", "fact_trtc_call"]),
        mart.CUSTOMER_KEY_KEY,
    } <= set(calls.parent_keys)
    assert (
        AssetKey(["core", "fact_push_log"])
        in graph.get(AssetKey(["mart", "push_delivery_daily"])).parent_keys
    )
    assert graph.get(mart.KPI_KEY).partitions_def.timezone == "Asia/Shanghai"
    for table in days.TABLES:
        assert graph.get(AssetKey(["mart", table])).partitions_def == mart.reporting_daily
    repo = defs.get_repository_def()
    assert {"mart_schedule", "mart_full_scan_schedule", "mart_daily_kpis_schedule"} <= {
        s.name for s in repo.schedule_defs
    }
    assert "mart_days" in {s.name for s in repo.sensor_defs}
    assert "customers" in defs.resources


def test_simulator_shares_returning_customers_between_crm_and_trtc() -> None:
    from simulator import crm as sim_crm
    from simulator import trtc as sim_trtc

    settings = sim_crm.Settings()
    served = [sim_crm.make_call(settings, 20_500, i)["customerNumber"] for i in range(2000)]
    returning = [n for n in served if n in set(sim_customers.CRM_NUMBERS)]
    assert 20 < len(returning) < 120  # about 3 %
    assert set(sim_customers.trtc_user_ids()) <= set(sim_trtc._users(settings.seed))
    assert {normalize(u) for u in sim_customers.trtc_user_ids()} - {None} == {
        normalize(n) for n in sim_customers.RETURNING_NUMBERS
    }


# ------------------------------------------------------------------------------------------
# precision (migration 0013): durations one decimal of their unit, rates four decimals

MIGRATIONS = Path(__file__).resolve().parents[1] / "sql" / "migrations" / "versions"
ROUNDED = {
    "agent_daily": {"answer_rate", "avg_duration_s", "avg_ring_s"},
    "api_usage_daily": {"error_rate"},
    "call_daily": {"answer_rate", "avg_duration_s", "p50_duration_s", "p90_duration_s", "avg_ring_s"},
    "call_hourly": {"answer_rate"},
    "push_delivery_daily": {"success_rate", "latency_p50_ms", "latency_p95_ms"},
}


def _decimals_allowed(column: str) -> int:
    if column.endswith("_rate"):
        return 4
    assert column.endswith(("_s", "_ms")), f"mart column {column}: decide its precision (migration 0013)"
    return 1


def _migration(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(f"migration_{name[:4]}", MIGRATIONS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mart_durations_and_rates_show_no_more_than_their_decimals(db: psycopg.Connection) -> None:
    noon = datetime(2026, 11, 13, 12, tzinfo=TZ)
    # Answered talk times 0 and 13 s: percentile_cont(0.9) is 11.700000000000001 in double
    # precision; push latencies 0 and 3 ms: the 95th percentile is 2.8499999999999996.
    db.execute(
        "INSERT INTO core.fact_crm_call (id, call_id, created_at, call_type, result, duration, ringing_duration, "
        "agent_name, _loaded_at) VALUES (1, 'c1', %(t)s, 1, 5, 0, 1, 'A', now()), "
        "(2, 'c2', %(t)s, 1, 5, 13, 2, 'A', now()), (3, 'c3', %(t)s, 1, 3, 0, 2, 'A', now())",
        {"t": noon},
    )
    db.execute(
        "INSERT INTO core.fact_push_log (enterprise_id, id, create_time, type, result, latency_ms, retry, "
        "_loaded_at) VALUES (1, 1, %(t)s, 1, 1, 0, 0, now()), (1, 2, %(t)s, 1, 0, 3, 1, now())",
        {"t": noon},
    )
    db.execute(
        "INSERT INTO core.fact_isales_api_call (vdn_id, id, oper_time, url, result_code, _loaded_at) "
        "VALUES (7, 'a1', %(t)s, '/x', '0200000', now()), (7, 'a2', %(t)s, '/x', '0200000', now()), "
        "(7, 'a3', %(t)s, '/x', '0200001', now())",
        {"t": noon},
    )
    days.write_day(db, noon.date(), *mart.day_bounds(noon.date(), "Asia/Shanghai"), "Asia/Shanghai")
    noisy = db.execute(
        "SELECT (SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_s)::text FROM mart.calls "
        "        WHERE answered_at IS NOT NULL), "
        "       (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)::text FROM mart.push_deliveries)"
    ).fetchone()
    assert noisy == ("11.700000000000001", "2.8499999999999996")  # the data does make noise

    columns_of = defaultdict(list)
    for view, column, kind in db.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid "
        "WHERE n.nspname = 'mart' AND c.relkind IN ('v', 'r') AND a.attnum > 0 AND NOT a.attisdropped "
        "AND format_type(a.atttypid, a.atttypmod) IN ('numeric', 'double precision', 'real') ORDER BY 1, a.attnum"
    ).fetchall():
        assert kind == "numeric", f"mart.{view}.{column} is {kind}: floats print their noise"
        columns_of[view].append(column)
    assert {v: set(c) for v, c in columns_of.items()} == ROUNDED
    shown: dict[tuple[str, str], list[str]] = {}
    for view, cols in columns_of.items():
        for column in cols:
            query = sql.SQL("SELECT {c}::text FROM mart.{v} WHERE {c} IS NOT NULL").format(
                c=sql.Identifier(column), v=sql.Identifier(view)
            )
            shown[view, column] = [r[0] for r in db.execute(query).fetchall()]
            assert shown[view, column], f"no value of mart.{view}.{column} to check"
            for value in shown[view, column]:
                assert len(value.partition(".")[2]) <= _decimals_allowed(column), (view, column, value)
    assert shown["call_daily", "p90_duration_s"] == ["11.7"]
    assert shown["call_daily", "p50_duration_s"] == ["6.5"]
    assert shown["call_daily", "avg_ring_s"] == ["1.7"] and shown["call_daily", "answer_rate"] == ["0.6667"]
    assert shown["push_delivery_daily", "latency_p95_ms"] == ["2.9"]  # 2.85 as written, rounded up
    assert shown["api_usage_daily", "error_rate"] == ["0.3333"]


def _alembic(url: str, action: str, target: str, role: str | None = None) -> None:
    """``alembic upgrade|downgrade`` on ``url``, as ``role`` when given."""
    engine = create_engine(warehouse.sqlalchemy_url(url))
    try:
        with engine.begin() as conn:
            if role:
                conn.exec_driver_sql(f"GRANT ALL ON public.alembic_version TO {role}")
                conn.exec_driver_sql(f"SET LOCAL ROLE {role}")
            cfg = Config()
            cfg.set_main_option("script_location", str(warehouse.MIGRATIONS_DIR))
            cfg.attributes["connection"] = conn
            getattr(command, action)(cfg, target)
    finally:
        engine.dispose()


def _views(conn: psycopg.Connection) -> dict[str, tuple]:
    """Each mart view: definition, owner, grants, comment, and its columns with type and comment."""
    views = {}
    for oid, name, definition, owner, acl, comment in conn.execute(
        "SELECT c.oid, c.relname, pg_get_viewdef(c.oid), pg_get_userbyid(c.relowner), c.relacl::text, "
        "obj_description(c.oid, 'pg_class') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'mart' AND c.relkind = 'v'"
    ).fetchall():
        cols = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), col_description(attrelid, attnum) "
            "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
        grants = frozenset(acl.strip("{}").split(",")) if acl else frozenset()  # in any order
        views[name] = (definition, owner, grants, comment, cols)
    return views


def test_rounding_migration_downgrades_to_0011s_views_and_keeps_owner_grants_and_comments(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    m11, m13 = _migration("0011_mart.py"), _migration("0013_mart_rounding.py")
    for view, body in m13.OLD_VIEWS.items():
        assert body == m11.VIEWS[view]
    for view, cols in m13.OLD_COMMENTS.items():
        assert cols == {c: m11.COMMENTS[view][1][c] for c in cols}
    # From 0015's tables kept by day back to 0013's views first, as the owner.
    _alembic(warehouse_url, "downgrade", "0013", role="loader")
    head = _views(db)
    assert head["call_daily"][1] == "loader" and "analyst=r/loader" in head["call_daily"][2]

    # As the owner, like a deployment whose pipeline login is loader (not a superuser).
    _alembic(warehouse_url, "downgrade", "0012", role="loader")
    old = _views(db)
    assert {v for v in old if old[v] != head[v]} == {"call_daily", "push_delivery_daily", "agent_daily"}
    for view, (comment, cols) in m11.COMMENTS.items():
        _, _, _, got_comment, got_cols = old[view.removeprefix("mart.")]
        assert got_comment == comment and {c: t for c, _, t in got_cols} == cols, view
    types = {c: t for c, t, _ in old["call_daily"][4]}
    assert types["p90_duration_s"] == "double precision"
    for view in ("call_daily", "push_delivery_daily"):
        assert old[view][1:3] == head[view][1:3]  # owner and grants

    db.execute("GRANT SELECT ON mart.call_daily TO PUBLIC")  # a grant made since 0011 survives
    _alembic(warehouse_url, "upgrade", "0013")  # as a superuser: the views are given back to loader
    again = _views(db)
    assert again["call_daily"][2] == head["call_daily"][2] | {"=r/loader"}
    assert {v: (*d[:2], *d[3:]) for v, d in again.items()} == {v: (*d[:2], *d[3:]) for v, d in head.items()}
    assert {v: d[2] for v, d in again.items() if v != "call_daily"} == {
        v: d[2] for v, d in head.items() if v != "call_daily"
    }


def _relations(conn: psycopg.Connection, names: tuple[str, ...]) -> dict[str, tuple]:
    """Each relation: kind, owner, grants, comment, and its columns with type and comment."""
    out = {}
    for name in names:
        oid, kind, owner, acl, comment = conn.execute(
            "SELECT c.oid, c.relkind, pg_get_userbyid(c.relowner), c.relacl::text, obj_description(c.oid, 'pg_class') "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            (f"mart.{name}",),
        ).fetchone()
        cols = conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), col_description(attrelid, attnum) "
            "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
        out[name] = (
            kind,
            owner,
            frozenset(acl.strip("{}").split(",")) if acl else frozenset(),
            comment,
            cols,
        )
    return out


def _rows(conn: psycopg.Connection, name: str) -> list[tuple]:
    query = sql.SQL("SELECT * FROM {} ORDER BY 1, 2, 3, 4").format(sql.Identifier("mart", name))
    return sorted(conn.execute(query).fetchall(), key=repr)


def test_kept_by_day_migration_turns_the_views_into_tables_with_their_rows_grants_and_comments(
    warehouse_url: str, db: psycopg.Connection
) -> None:
    _alembic(warehouse_url, "downgrade", "0013", role="loader")
    noon = datetime(2026, 11, 13, 12, tzinfo=TZ)
    db.execute(
        "INSERT INTO core.fact_crm_call (id, call_id, created_at, call_type, result, duration, ringing_duration, "
        "agent_name, customer_number, _loaded_at) VALUES (1, 'c1', %(t)s, 1, 5, 30, 1, 'A', '13812345678', %(t)s), "
        "(2, 'c2', %(t)s - interval '1 day', 2, 2, 0, 9, 'B', '13812345678', %(t)s)",
        {"t": noon},
    )
    db.execute(
        "INSERT INTO core.customer_key (subject, customer_key, last4, key_id, _loaded_at) "
        "VALUES ('+8613812345678', 'k', '5678', 'x', now())"
    )
    db.execute("GRANT SELECT ON mart.call_daily TO PUBLIC")  # a grant made since 0011 survives
    names = days.TABLES
    views, rows = _relations(db, names), {name: _rows(db, name) for name in names}
    assert rows["call_daily"] and rows["customers"]
    _alembic(warehouse_url, "upgrade", "head")
    after = _relations(db, names)
    assert {name: after[name][0] for name in names} == dict.fromkeys(names, "r")
    assert {n: a[1:] for n, a in after.items()} == {n: v[1:] for n, v in views.items()}
    assert {name: _rows(db, name) for name in names} == rows
    watermark = db.execute(
        "SELECT value::timestamptz FROM core.mart_state WHERE name = 'facts_seen'"
    ).fetchone()
    assert watermark == (noon,)  # the newest load the fill read
    assert db.execute("SELECT count(*) FROM core.customer_day").fetchone() == (2,)
    _alembic(warehouse_url, "downgrade", "0013", role="loader")
    assert _relations(db, names) == views
    _alembic(warehouse_url, "upgrade", "head")


# ------------------------------------------------------------------------------------------
# kept by day: the same answers as the views, what changed found, bad input


KEPT = re.compile(r"\bmart\.(" + "|".join(days.TABLES) + r")\b")


def _old_views() -> dict[str, str]:
    return _migration("0015_mart_kept_by_day.py")._old_views()


def _readme_answers(conn: psycopg.Connection, schema: str = "mart") -> dict[str, list]:
    out = {}
    for number, query in readme_examples():
        query = KEPT.sub(rf"{schema}.\1", query.replace("current_date", f"DATE '{TODAY}'"))
        out[number] = [tuple(map(str, row)) for row in conn.execute(query).fetchall()]
    return out


def _hourly_path_in_transaction(conn: psycopg.Connection, since: datetime) -> list:
    """What the mart job and the mart_days runs do, in the caller's transaction."""
    conn.execute(days.TOUCHED)
    params = {**pii.pads(KEY.encode()), "key_id": pii.key_id(KEY.encode()), "since": since}
    conn.execute(mart.UPSERT, params)
    days.refresh_customers(conn)
    touched = days.touched_days(conn, since, "Asia/Shanghai")
    for day in touched:
        days.write_day(conn, day, *mart.day_bounds(day, "Asia/Shanghai"), "Asia/Shanghai")
    return touched


LATE_AND_GONE = [
    # soft deletes: a few rows of each fact
    "UPDATE core.fact_crm_call SET _gone_at = now() WHERE id IN (SELECT id FROM core.fact_crm_call ORDER BY id LIMIT 7)",
    "UPDATE core.fact_trtc_call SET _gone_at = now() "
    "WHERE call_id IN (SELECT call_id FROM core.fact_trtc_call ORDER BY call_id LIMIT 7)",
    "UPDATE core.fact_push_log SET _gone_at = now() WHERE id IN (SELECT id FROM core.fact_push_log ORDER BY id LIMIT 5)",
    "UPDATE core.fact_isales_api_call SET _gone_at = now() "
    "WHERE id IN (SELECT id FROM core.fact_isales_api_call ORDER BY id LIMIT 5)",
    # late records: calls of last week's Monday loaded now, one by a new customer, one app user's
    "INSERT INTO core.fact_crm_call (id, call_id, created_at, call_type, result, duration, ringing_duration, "
    "agent_name, customer_number, _loaded_at) SELECT id + 1000000000, call_id || '-late', "
    "TIMESTAMPTZ '2026-11-09 10:00:00+08' + (id % 7) * interval '1 minute', call_type, result, duration, "
    "ringing_duration, agent_name, CASE WHEN id % 2 = 0 THEN '13900001111' ELSE customer_number END, now() "
    "FROM core.fact_crm_call ORDER BY id LIMIT 5",
]


def test_readme_answers_are_the_views_answers_after_deletions_and_late_records(
    wh: psycopg.Connection,
) -> None:
    with wh.transaction(force_rollback=True):
        wh.execute("CREATE SCHEMA old_mart")
        for view, body in _old_views().items():
            wh.execute(f"CREATE VIEW old_mart.{view} AS {body}")
        assert _readme_answers(wh) == _readme_answers(wh, "old_mart")
        since = wh.execute("SELECT now() - interval '1 second'").fetchone()[0]
        for statement in LATE_AND_GONE:
            wh.execute(statement)
        # a TRTC call loaded late: a copy of three calls, a day earlier, under new ids
        wh.execute(
            "CREATE TEMP TABLE late ON COMMIT DROP AS SELECT * FROM core.fact_trtc_call ORDER BY call_id LIMIT 3"
        )
        wh.execute(
            "UPDATE pg_temp.late SET call_id = call_id || '-late', started_at = started_at - interval '1 day', "
            "accepted_at = accepted_at - interval '1 day', ended_at = ended_at - interval '1 day', "
            "_loaded_at = now(), _gone_at = NULL"
        )
        wh.execute("INSERT INTO core.fact_trtc_call SELECT * FROM pg_temp.late")
        assert _readme_answers(wh) != _readme_answers(wh, "old_mart")  # the tables wait for their days
        touched = _hourly_path_in_transaction(wh, since)
        assert date(2026, 11, 9) in touched and len(touched) < 40  # the days changed, not all history
        assert _readme_answers(wh) == _readme_answers(wh, "old_mart")
        # A full rebuild (every day written again) gives the same answers too.
        for day in days.touched_days(wh, state.EVERYTHING, "Asia/Shanghai"):
            days.write_day(wh, day, *mart.day_bounds(day, "Asia/Shanghai"), "Asia/Shanghai")
        assert _readme_answers(wh) == _readme_answers(wh, "old_mart")
        for view in days.TABLES:
            assert _rows(wh, view) == sorted(
                wh.execute(
                    sql.SQL("SELECT * FROM {} ORDER BY 1, 2, 3, 4").format(sql.Identifier("old_mart", view))
                ).fetchall(),
                key=repr,
            ), view


def test_a_day_without_data_is_empty_and_an_unlisted_code_is_reported(wh: psycopg.Connection) -> None:
    with wh.transaction(force_rollback=True):
        for day in (date(2019, 1, 1), date(2031, 6, 30)):  # before and after every source
            written = days.write_day(wh, day, *mart.day_bounds(day, "Asia/Shanghai"), "Asia/Shanghai")
            assert written == dict.fromkeys(days.TABLES, 0)
        # A mapping table that lacks a code: listed with its calls, the day still written.
        wh.execute("DELETE FROM mart.map_crm_outcome WHERE result = 5")
        full = mart_checks.codes_mapped(wh, mart.view_key("calls"), state.EVERYTHING)
        assert not full.passed and "crm result=5" in full.metadata["unlisted_codes"].value
        since = wh.execute("SELECT now() - interval '1 second'").fetchone()[0]
        assert mart_checks.codes_mapped(wh, mart.view_key("calls"), since).passed  # nothing loaded since
        wh.execute("UPDATE core.fact_crm_call SET _loaded_at = now() WHERE result = 5")
        hourly = mart_checks.codes_mapped(wh, mart.view_key("calls"), since)
        assert hourly.metadata["unlisted_codes"].value == full.metadata["unlisted_codes"].value
        day = date.fromisoformat(KPI_DAY)
        days.write_day(wh, day, *mart.day_bounds(day, "Asia/Shanghai"), "Asia/Shanghai")
        assert wh.execute(
            "SELECT count(*) FROM mart.hangup_cause_daily WHERE day = %s AND outcome = 'other'", (day,)
        ).fetchone()[0]


def test_day_ranges_are_stretches_of_consecutive_partitions() -> None:
    keys = ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    assert days.day_ranges(["2026-11-05", "2026-11-01", "2026-11-02", "2026-11-04", "2020-01-01"], keys) == [
        ("2026-11-01", "2026-11-02"),
        ("2026-11-04", "2026-11-05"),
    ]
    assert days.day_ranges([], keys) == []


def test_the_sensor_asks_for_the_days_the_mart_run_found(loaded: dict, wh: psycopg.Connection) -> None:
    from dagster import build_run_status_sensor_context

    from pipelines.defs.mart.jobs import mart_days_sensor

    wh.execute(
        "UPDATE core.fact_crm_call SET _gone_at = now() WHERE id = (SELECT min(id) FROM core.fact_crm_call)"
    )
    try:
        instance = DagsterInstance.ephemeral()
        result = materialize(
            [mart.customer_identity, mart.customer_key, mart.mart_views],
            resources=loaded["resources"],
            instance=instance,
        )
        found = metadata(result, "mart/calls")["days_touched"]
        assert found  # the deletion's day, and what loads wrote within the overlap
        context = build_run_status_sensor_context(
            sensor_name="mart_days",
            dagster_event=result.get_run_success_event(),
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        )
        requests = list(mart_days_sensor(context))
        asked = [
            (r.partition_key, r.partition_key)
            if r.partition_key
            else (r.tags[RANGE_START], r.tags[RANGE_END])
            for r in requests
        ]
        assert asked == days.day_ranges(found, mart.reporting_daily.get_partition_keys())
    finally:
        wh.execute(
            "UPDATE core.fact_crm_call SET _gone_at = NULL WHERE id = (SELECT min(id) FROM core.fact_crm_call)"
        )


def test_the_weekly_scan_checks_every_row_and_moves_no_watermark(
    loaded: dict, wh: psycopg.Connection
) -> None:
    before = wh.execute("SELECT value FROM core.mart_state WHERE name = 'facts_seen'").fetchone()
    result = materialize(
        [mart.mart_views],
        resources=loaded["resources"],
        instance=DagsterInstance.ephemeral(),
        run_config={"ops": {"mart_views": {"config": {"full_scan": True}}}},
    )
    assert checks(result) == {"customers_keyed": True, "codes_mapped": True, "no_phone_numbers": True}
    scanned = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}["no_phone_numbers"]
    assert scanned["scope"].value == "all rows"
    assert set(scanned["rows_with_phone_like_text"].value) >= {*days.TABLES, *mart.VIEW_DEPS}
    assert metadata(result, "mart/calls")["days_touched"] == []
    assert wh.execute("SELECT value FROM core.mart_state WHERE name = 'facts_seen'").fetchone() == before
