"""The iSales simulator: signing, limits, paging, data quirks and fault modes.

Requests are signed with the pipeline's ``ISalesAuth``, which the simulator verifies with its own
canonicalisation: each side checks the other.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from pipelines.defs.sources.isales.signing import ISalesAuth, authorization
from simulator import isales
from simulator.common import Fault, SimState
from simulator.isales import Settings, build_app, env

NOW = datetime(2025, 11, 20, 12, 0, 0, tzinfo=UTC)  # 20:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")
CALLLOGS = "/isales/rest/isales/v1/openapi/campaigns/{vdn}/calllogs"
SERVERS = "/isales/rest/isales/v1/openapi/campaigns/{vdn}/file/queryServer"
WEEK = {"beginTime": "2025-11-17 00:00:00", "endTime": "2025-11-23 23:59:59"}


class Sim:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.state = SimState()
        self.state.clock.set(now=NOW.timestamp())
        app = Starlette(routes=[Mount("/isales", app=build_app(self.settings, self.state))])
        self.client = TestClient(app)
        self.auth = ISalesAuth(
            self.settings.ak,
            self.settings.sk,
            variant=self.settings.sign_variant,  # type: ignore[arg-type]
            clock=lambda: datetime.fromtimestamp(self.state.clock.now(), UTC),
        )

    def post(self, path: str, body: object, vdn: int | str = 1, auth: object = None, **kwargs: object):
        content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
        return self.client.post(path.format(vdn=vdn), content=content, auth=auth or self.auth, **kwargs)

    def logs(self, vdn: int = 1, **body: object) -> dict:
        r = self.post(CALLLOGS, {"offset": 0, "limit": 100, **WEEK, **body}, vdn=vdn)
        assert r.status_code == 200, r.text
        return r.json()

    def servers(self, vdn: int = 1, **body: object) -> dict:
        r = self.post(SERVERS, {"offset": 0, "limit": 10, **body}, vdn=vdn)
        assert r.status_code == 200, r.text
        return r.json()

    def all_logs(self, limit: int = 100, vdn: int = 1, **body: object) -> tuple[int, list[dict]]:
        out: list[dict] = []
        offset = 0
        while True:
            page = self.logs(vdn=vdn, offset=offset, limit=limit, **body)
            out.extend(page["result"])
            if len(page["result"]) < limit:
                return page["count"], out
            offset += limit


@pytest.fixture
def sim() -> Sim:
    return Sim()


def _local(oper_time: str) -> datetime:
    return datetime.fromisoformat(oper_time).astimezone(TZ).replace(tzinfo=None)


# --- signing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["hex", "base64"])
def test_signed_requests_are_accepted_in_both_variants(variant: str) -> None:
    s = Sim(Settings(sign_variant=variant))
    assert s.logs()["resultCode"] == "0200000"
    assert s.servers()["resultCode"] == "0200000"
    other = "base64" if variant == "hex" else "hex"
    wrong = ISalesAuth(s.settings.ak, s.settings.sk, variant=other, clock=lambda: NOW)  # type: ignore[arg-type]
    assert s.post(CALLLOGS, {"offset": 0, "limit": 1, **WEEK}, auth=wrong).status_code == 401


def test_wrong_secret_unknown_ak_and_missing_header_are_401(sim: Sim) -> None:
    body = {"offset": 0, "limit": 1, **WEEK}
    bad_sk = ISalesAuth(sim.settings.ak, "not-the-secret", clock=lambda: NOW)
    r = sim.post(CALLLOGS, body, auth=bad_sk)
    assert r.status_code == 401
    assert r.json()["resultCode"] != "0200000"
    assert sim.settings.sk not in r.text
    bad_ak = ISalesAuth("someone-else", sim.settings.sk, clock=lambda: NOW)
    assert sim.post(CALLLOGS, body, auth=bad_ak).status_code == 401
    r = sim.client.post(CALLLOGS.format(vdn=1), content=json.dumps(body).encode())
    assert r.status_code == 401
    assert "Authorization" in r.json()["resultDesc"]


def auth_at(sim: Sim, minutes: int) -> ISalesAuth:
    return ISalesAuth(sim.settings.ak, sim.settings.sk, clock=lambda: NOW + timedelta(minutes=minutes))


def test_stale_timestamp_is_401(sim: Sim) -> None:
    body = {"offset": 0, "limit": 1, **WEEK}
    for minutes, status in ((16, 401), (-16, 401), (14, 200), (-14, 200)):
        auth = ISalesAuth(
            sim.settings.ak, sim.settings.sk, clock=lambda m=minutes: NOW + timedelta(minutes=m)
        )
        r = sim.post(CALLLOGS, body, auth=auth)
        assert r.status_code == status, (minutes, r.text)
    assert (
        "away from the server clock" in sim.post(CALLLOGS, body, auth=auth_at(sim, 20)).json()["resultDesc"]
    )


def test_tampered_body_is_401(sim: Sim) -> None:
    signed_body = json.dumps({"offset": 0, "limit": 10, **WEEK}).encode()
    sent_body = json.dumps({"offset": 0, "limit": 99, **WEEK}).encode()
    headers = {
        "host": "testserver",
        "content-length": str(len(signed_body)),
        "content-type": "application/json; charset=UTF-8",
    }
    path = CALLLOGS.format(vdn=1)
    auth = authorization(sim.settings.ak, sim.settings.sk, "POST", path, None, headers, signed_body, NOW)
    ok = sim.client.post(path, content=signed_body, headers={**headers, "Authorization": auth})
    assert ok.status_code == 200
    assert len(ok.json()["result"]) == 10
    bad = sim.client.post(path, content=sent_body, headers={**headers, "Authorization": auth})
    assert bad.status_code == 401
    # signing the path without the mount prefix is a different URI
    short = authorization(sim.settings.ak, sim.settings.sk, "POST", path[7:], None, headers, signed_body, NOW)
    assert (
        sim.client.post(path, content=signed_body, headers={**headers, "Authorization": short}).status_code
        == 401
    )


# --- limits and error envelopes ------------------------------------------------------------------


def _error(r) -> str:
    assert r.status_code == 200
    payload = r.json()
    assert payload["resultCode"] == payload["returnCode"]
    assert "result" not in payload
    return payload["resultCode"]


@pytest.mark.parametrize("vdn", [0, 10000, "abc", 3, "-1"])
def test_bad_vdn(sim: Sim, vdn: object) -> None:
    assert _error(sim.post(CALLLOGS, {"offset": 0, "limit": 1, **WEEK}, vdn=vdn)) == "0200001"  # type: ignore[arg-type]
    assert _error(sim.post(SERVERS, {"offset": 0, "limit": 1}, vdn=vdn)) == "0200001"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"limit": 0}, "02000007"),
        ({"limit": 101}, "02000007"),
        ({"offset": -1}, "02000007"),
        ({"limit": "ten"}, "02000006"),
        ({"limit": None}, "02000001"),
        ({"beginTime": None}, "02000001"),
        ({"endTime": ""}, "02000001"),
        ({"beginTime": "2025/11/17 00:00:00"}, "02000006"),
        ({"endTime": "2025-13-01 00:00:00"}, "02000006"),
        ({"endTime": "2025-11-24 00:00:01"}, "0200001"),
        ({"beginTime": "2025-11-24 00:00:00"}, "0200001"),
        ({"url": 5}, "02000006"),
    ],
)
def test_calllogs_limits(sim: Sim, change: dict, code: str) -> None:
    body = {"offset": 0, "limit": 10, **WEEK, **change}
    body = {k: v for k, v in body.items() if not (k == "limit" and v is None)}
    got = _error(sim.post(CALLLOGS, body))
    assert got == code
    assert isinstance(got, str)


def test_seven_day_rule_message_and_edges(sim: Sim) -> None:
    r = sim.post(
        CALLLOGS,
        {"offset": 0, "limit": 10, "beginTime": "2025-11-10 00:00:00", **{"endTime": "2025-11-17 00:00:01"}},
    )
    assert _error(r) == "0200001"
    assert "7" in r.json()["resultDesc"]
    exactly = sim.logs(beginTime="2025-11-10 00:00:00", endTime="2025-11-17 00:00:00")
    assert exactly["resultCode"] == "0200000"
    assert exactly["count"] == 7 * 200 + 1  # both ends inclusive: the 17th's midnight record too
    assert sim.logs(limit=100)["resultCode"] == "0200000"
    assert _error(sim.post(CALLLOGS, b"not json")) == "02000008"
    assert _error(sim.post(CALLLOGS, [1, 2])) == "02000008"


def test_english_locale(sim: Sim) -> None:
    r = sim.post(CALLLOGS, {"offset": 0, "limit": 0, **WEEK}, headers={"locale": "en_US"})
    assert r.json()["resultCode"] == "02000007"
    r = sim.post(CALLLOGS, b"[]", headers={"locale": "en_US"})
    assert r.json()["resultDesc"] == "Parameter conversion failed."


# --- paging and totals ---------------------------------------------------------------------------


def test_paging_is_consistent(sim: Sim) -> None:
    total, by_100 = sim.all_logs(limit=100)
    # Mon 17 .. Thu 20 20:00 Shanghai: 3 full days and 20/24 of the fourth
    assert total == 3 * 200 + 167 == len(by_100)
    _, by_7 = sim.all_logs(limit=7)
    assert by_7 == by_100
    ids = [r["id"] for r in by_100]
    assert len(set(ids)) == len(ids)
    times = [r["id"][:13] for r in by_100]
    assert times == sorted(times)
    # an offset that is not a multiple of the limit is just an offset
    page = sim.logs(offset=13, limit=10)
    assert page["result"] == by_100[13:23]
    assert page["count"] == total
    assert sim.logs(offset=total + 5)["result"] == []


def test_window_bounds_are_inclusive_in_vendor_zone(sim: Sim) -> None:
    page = sim.logs(beginTime="2025-11-18 00:00:00", endTime="2025-11-18 00:00:00")
    assert page["count"] == 1
    assert _local(page["result"][0]["operTime"]) == datetime(2025, 11, 18)
    _, records = sim.all_logs(beginTime="2025-11-18 06:00:00", endTime="2025-11-18 11:59:59")
    assert len(records) == 50
    for r in records:
        assert datetime(2025, 11, 18, 6) <= _local(r["operTime"]) <= datetime(2025, 11, 18, 11, 59, 59)


def test_only_past_records_exist_and_new_ones_append(sim: Sim) -> None:
    total, before = sim.all_logs()
    now_local = NOW.astimezone(TZ).replace(tzinfo=None)
    assert all(_local(r["operTime"]) <= now_local for r in before)
    sim.state.clock.set(now=(NOW + timedelta(hours=3)).timestamp())
    later_total, after = sim.all_logs()
    assert later_total == total + 25
    assert after[: len(before)] == before


def test_determinism_and_per_vdn_data() -> None:
    a, b = Sim(), Sim()
    assert (
        a.post(CALLLOGS, {"offset": 50, "limit": 100, **WEEK}).content
        == b.post(CALLLOGS, {"offset": 50, "limit": 100, **WEEK}).content
    )
    one, two = a.logs(vdn=1)["result"], a.logs(vdn=2)["result"]
    assert {r["id"] for r in one}.isdisjoint({r["id"] for r in two})
    assert all("/campaigns/2" in r["url"] for r in two)
    other_seed = Sim(Settings(seed=8)).logs()["result"]
    assert [r["id"] for r in other_seed] != [r["id"] for r in one]


def test_volume_setting() -> None:
    s = Sim(Settings(volume=1000))
    assert s.logs(beginTime="2025-11-18 00:00:00", endTime="2025-11-18 23:59:59")["count"] == 1000
    assert Sim(Settings(volume=0)).logs()["count"] == 0


# --- the documents' quirks -----------------------------------------------------------------------


def test_record_shape_and_quirks(sim: Sim) -> None:
    page = sim.logs()
    assert set(page) == {"result", "returnCode", "resultCode", "count", "resultDesc", "returnDesc"}
    assert page["resultDesc"] == page["returnDesc"] == "queryCalllogs success"
    _, records = sim.all_logs(beginTime="2025-11-13 20:00:00", endTime="2025-11-20 19:59:59")
    assert len(records) == 1400
    bad_json = 0
    for r in records:
        assert list(r) == [
            "request",
            "httpStatus",
            "resultCode",
            "id",
            "resultDesc",
            "url",
            "operTime",
            "type",
        ]
        assert re.fullmatch(r"\d{30}", r["id"])
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.000\+00:00", r["operTime"])
        # the sample's id starts with the call's epoch milliseconds
        millis = int(r["id"][:13])
        assert millis // 1000 == int(datetime.fromisoformat(r["operTime"]).timestamp())
        assert r["url"].startswith("/rest/isales/v1/openapi/campaigns/1")
        assert r["type"] in ("GET", "POST")
        assert isinstance(r["httpStatus"], int)
        assert isinstance(r["resultCode"], str) and r["resultCode"] in isales.CODES | {"0200000": ""}
        assert isinstance(r["request"], str)
        try:
            json.loads(r["request"])
        except ValueError:
            bad_json += 1
    assert 1 <= bad_json <= 0.04 * len(records)
    statuses = {r["httpStatus"] for r in records}
    assert statuses == {200, 400, 500}
    assert sum(r["httpStatus"] == 200 for r in records) > 0.85 * len(records)
    codes = {r["resultCode"] for r in records}
    assert {len(c) for c in codes} == {7, 8}
    assert len({r["url"].rsplit("/", 1)[-1] for r in records}) >= 6
    texts = "".join(r["request"] for r in records)
    assert re.search(r'"calledNo":"0\d{9,}"', texts)  # phone numbers with a leading zero
    assert re.search(r"[\u4e00-\u9fff]", texts)
    sample_like = [r for r in records if r["url"].endswith("/queryObsResultDetail")]
    assert sample_like and all(r["type"] == "GET" for r in sample_like)
    assert any(r["resultDesc"] == "queryObsResultDetail success" for r in sample_like)


def test_url_filter(sim: Sim) -> None:
    total, records = sim.all_logs()
    url = records[0]["url"]
    count, only = sim.all_logs(limit=10, url=url)
    assert 0 < count == len(only) < total
    assert only == [r for r in records if r["url"] == url]


def test_wall_clock_reading_of_oper_time() -> None:
    s = Sim(Settings(oper_time_wall_clock=True))
    page = s.logs(beginTime="2025-11-18 00:00:00", endTime="2025-11-18 00:00:00")
    record = page["result"][0]
    assert record["operTime"] == "2025-11-18T00:00:00.000+00:00"
    # the id still carries the true instant: 2025-11-17T16:00:00Z
    assert int(record["id"][:13]) // 1000 == int(datetime(2025, 11, 17, 16, tzinfo=UTC).timestamp())


# --- file servers --------------------------------------------------------------------------------


def test_file_servers(sim: Sim) -> None:
    page = sim.servers()
    assert "count" not in page
    assert page["resultCode"] == page["returnCode"] == "0200000"
    servers = page["server"]
    assert len(servers) == 5
    for x in servers:
        assert list(x) == ["port", "ip", "filePath", "userName", "serverId"]
        assert re.fullmatch(r"\d{30}", x["serverId"])
        assert x["port"] is None or isinstance(x["port"], str)
    assert any(x["ip"] is None and x["port"] is None and x["filePath"] is None for x in servers)
    assert any(x["ip"] is not None for x in servers)
    assert sim.servers(offset=2, limit=2)["server"] == servers[2:4]
    assert sim.servers(offset=1, limit=3)["server"] == servers[1:4]
    chosen = [servers[1]["serverId"], servers[3]["serverId"]]
    assert sim.servers(serverIds=chosen)["server"] == [servers[1], servers[3]]
    assert sim.servers(vdn=2)["server"] != servers


def test_file_server_count_and_removal() -> None:
    s = Sim(Settings(file_server_count=True, file_servers_per_vdn=7))
    page = s.servers()
    assert page["count"] == 7
    gone = page["server"][2]["serverId"]
    s.settings.removed_server_ids.add(gone)
    after = s.servers()
    assert after["count"] == 6
    assert gone not in {x["serverId"] for x in after["server"]}
    assert s.servers(serverIds=[gone])["server"] == []


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"limit": 0}, "02000007"),
        ({"limit": 101}, "02000007"),
        ({"offset": None}, "02000001"),
        ({"serverIds": "abc"}, "02000006"),
        ({"serverIds": [1, 2]}, "02000006"),
        ({"serverIds": [str(i) for i in range(101)]}, "02000011"),
    ],
)
def test_file_server_limits(sim: Sim, change: dict, code: str) -> None:
    assert _error(sim.post(SERVERS, {"offset": 0, "limit": 10, **change})) == code


# --- faults --------------------------------------------------------------------------------------


def test_envelope_fault(sim: Sim) -> None:
    sim.state.faults.arm(isales.CALLLOGS, Fault("envelope"))
    assert _error(sim.post(CALLLOGS, {"offset": 0, "limit": 10, **WEEK})) == "0200033"
    assert sim.logs()["resultCode"] == "0200000"  # one use only
    sim.state.faults.arm(isales.QUERY_SERVER, Fault("envelope"))
    assert _error(sim.post(SERVERS, {"offset": 0, "limit": 10})) == "0200033"


def test_drift_fault(sim: Sim) -> None:
    normal = sim.logs()["result"]
    sim.state.faults.arm(isales.CALLLOGS, Fault("drift"))
    drifted = sim.logs()["result"]
    assert [r["id"] for r in drifted] == [r["id"] for r in normal]
    for old, new in zip(normal, drifted, strict=True):
        assert isinstance(new["operTime"], int)
        assert new["operTime"] // 1000 == int(datetime.fromisoformat(old["operTime"]).timestamp())
        try:
            assert new["request"] == json.loads(old["request"])
        except ValueError:
            assert new["request"] == old["request"]
    sim.state.faults.arm(isales.QUERY_SERVER, Fault("drift"))
    servers = sim.servers()["server"]
    assert all("serverID" in x and "serverId" not in x for x in servers)
    assert any(isinstance(x["port"], int) for x in servers)


def test_empty_fault_answers_success_with_no_records(sim: Sim) -> None:
    sim.state.faults.arm(isales.CALLLOGS, Fault("empty", times=2))
    page = sim.logs()
    assert page["resultCode"] == page["returnCode"] == "0200000"
    assert page["count"] == 0 and page["result"] == []
    assert sim.logs(vdn=2)["count"] == 0
    assert sim.logs()["count"] == 767  # two uses only
    sim.state.faults.arm(isales.QUERY_SERVER, Fault("empty"))
    servers = sim.servers()
    assert servers["resultCode"] == "0200000" and servers["server"] == []
    counted = Sim(Settings(file_server_count=True))
    counted.state.faults.arm(isales.QUERY_SERVER, Fault("empty"))
    assert counted.servers()["count"] == 0


@pytest.mark.parametrize(
    ("variant", "marker", "text_value", "number_value"),
    [
        ("nul", "\\u0000", "\x00", None),
        ("surrogate", "\\ud800", "\ud800", None),
        ("bignum", "1e999999", None, float("inf")),
    ],
)
def test_poison_fault_puts_one_bad_value_into_one_record(
    sim: Sim, variant: str, marker: str, text_value: str | None, number_value: float | None
) -> None:
    clean = sim.logs(limit=20)["result"]
    sim.state.faults.arm(isales.CALLLOGS, Fault("poison", variant=variant))
    response = sim.post(CALLLOGS, {"offset": 0, "limit": 20, **WEEK})
    assert response.content.decode().count(marker) == 1
    records = response.json()["result"]  # still valid JSON
    assert [r["id"] for r in records] == [r["id"] for r in clean]
    assert records[1:] == clean[1:]
    bad, good = records[0], clean[0]
    if text_value is not None:
        assert {k for k in bad if bad[k] != good[k]} == {"resultDesc"}
        assert bad["resultDesc"] == text_value + good["resultDesc"]
    else:
        assert {k for k in bad if bad[k] != good[k]} == {"httpStatus"}
        assert bad["httpStatus"] == number_value
    servers = sim.servers()["server"]
    sim.state.faults.arm(isales.QUERY_SERVER, Fault("poison", variant=variant))
    poisoned = sim.post(SERVERS, {"offset": 0, "limit": 10})
    assert poisoned.content.decode().count(marker) == 1
    first = poisoned.json()["server"][0]
    assert poisoned.json()["server"][1:] == servers[1:]
    if text_value is not None:
        assert first["userName"] == text_value + servers[0]["userName"]
    else:
        assert first["port"] == number_value


def test_deleted_call_logs_are_gone_counts_drop_and_offsets_shift(sim: Sim) -> None:
    total, before = sim.all_logs()
    _, other_vdn = sim.all_logs(vdn=2)
    gone = [before[5]["id"], before[150]["id"], before[-1]["id"]]
    sim.state.deleted.update(f"isales:{i}" for i in gone)
    sim.state.deleted.update({"isales:not-an-id", "pushlog:2053100000001"})
    after_total, after = sim.all_logs()
    assert after_total == total - 3
    assert after == [r for r in before if r["id"] not in gone]
    assert sim.logs(offset=100, limit=1)["result"][0]["id"] == before[101]["id"]  # one gone before
    _, by_7 = sim.all_logs(limit=7)
    assert by_7 == after
    assert sim.all_logs(vdn=2)[1] == other_vdn  # another VDN's log keeps its records
    url = before[150]["url"]
    _, filtered = sim.all_logs(url=url)
    assert filtered and before[150]["id"] not in {r["id"] for r in filtered}
    sim.state.deleted.clear()
    assert sim.all_logs() == (total, before)


def test_deleted_file_servers_are_no_longer_listed(sim: Sim) -> None:
    servers = sim.servers()["server"]
    sim.state.deleted.add(f"isales:{servers[1]['serverId']}")
    assert sim.servers()["server"] == [servers[0], *servers[2:]]


def test_generic_faults_pass_through_serve(sim: Sim) -> None:
    sim.state.faults.arm(isales.CALLLOGS, Fault("503"))
    assert sim.post(CALLLOGS, {"offset": 0, "limit": 10, **WEEK}).status_code == 503
    sim.state.faults.arm(isales.CALLLOGS, Fault("truncated"))
    r = sim.post(CALLLOGS, {"offset": 0, "limit": 10, **WEEK})
    with pytest.raises(ValueError):
        json.loads(r.content)
    assert sim.state.requests[f"isales {isales.CALLLOGS}"] == 2


# --- module contract -----------------------------------------------------------------------------


def test_env() -> None:
    settings = Settings(vdn_ids=(3, 17), sign_variant="base64")
    got = env(settings, "http://127.0.0.1:8765/isales")
    assert got == {
        "ISALES_BASE_URL": "http://127.0.0.1:8765/isales",
        "ISALES_AK": settings.ak,
        "ISALES_SK": settings.sk,
        "ISALES_VDN_IDS": "3,17",
        "ISALES_TIMEZONE": "Asia/Shanghai",
        "ISALES_SIGN_VARIANT": "base64",
    }


def test_simulator_imports_nothing_of_the_pipeline() -> None:
    tree = ast.parse(Path(isales.__file__).read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.split(".")[0] in ("pipelines", "models") for m in modules)
