"""The Udesk CCPS CRM simulator (seed 002) answers like the vendor's documents and samples."""

from __future__ import annotations

import hashlib
import json
import random
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from simulator import crm
from simulator.common import Fault, SimState

TZ = ZoneInfo("Asia/Shanghai")
NOW = int(datetime(2026, 11, 20, 12, 0, 0, tzinfo=TZ).timestamp())
DAY = date(2026, 11, 19).toordinal() - date(1970, 1, 1).toordinal()  # a full day before NOW
TODAY = DAY + 1
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Crm:
    """A simulator instance, its clock frozen at NOW, and a signed client."""

    def __init__(self, **settings: object) -> None:
        self.settings = crm.Settings(**settings)
        self.state = SimState()
        self.state.clock.set(now=NOW)
        self.client = TestClient(crm.build_app(self.settings, self.state))

    def auth(self, ts: int | None = None, email: str | None = None, secret: str | None = None) -> dict:
        ts = NOW if ts is None else ts
        email = self.settings.email if email is None else email
        secret = self.settings.secret_key if secret is None else secret
        return {"email": email, "timestamp": str(ts), "sign": crm.sign(email, secret, ts)}

    def logs(self, start: str, end: str, **params: object) -> dict:
        r = self.client.get(
            "/v1/callLogs", params={**self.auth(), "startTime": start, "endTime": end, **params}
        )
        assert r.status_code == 200
        return r.json()

    def view(self, call_id: str) -> dict:
        r = self.client.get("/v1/callLogs/view", params={**self.auth(), "callId": call_id})
        assert r.status_code == 200
        return r.json()

    def reasons(self) -> dict:
        r = self.client.get("/v1/hangupReasons", params=self.auth())
        assert r.status_code == 200
        return r.json()

    def search(self, body: dict) -> dict:
        r = self.client.post("/v1/callLogs/search", params=self.auth(), json=body)
        assert r.status_code == 200
        return r.json()

    def all_logs(self, start: str, end: str, page_size: int = 100) -> list[dict]:
        out: list[dict] = []
        page = 1
        while True:
            body = self.logs(start, end, pageNum=page, pageSize=page_size)
            assert body["code"] == 200, body
            out += body["data"]["list"]
            if len(body["data"]["list"]) < page_size:
                return out
            page += 1


def day_str(day: int) -> str:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day).isoformat()


def brute_force_times(day: int, volume: int) -> list[str]:
    """createTime of every call of a day, computed the slow way (independent of the window math)."""
    start = datetime.fromisoformat(day_str(day))
    return [
        (start + timedelta(seconds=(i * 86400) // volume)).strftime("%Y-%m-%d %H:%M:%S")
        for i in range(volume)
    ]


@pytest.fixture
def sim() -> Crm:
    return Crm()


# ---- signing --------------------------------------------------------------------------------


def test_sign_is_sha1_of_email_secret_timestamp() -> None:
    assert crm.sign("1@test.cn", "k", 1542192293) == hashlib.sha1(b"1@test.cn&k&1542192293").hexdigest()


def test_valid_signature_gets_the_success_envelope(sim: Crm) -> None:
    body = sim.reasons()
    assert body["code"] == 200 and isinstance(body["code"], int)
    assert body["message"] == "OK"
    assert body["visible"] is False


@pytest.mark.parametrize(
    "endpoint",
    ["/v1/callLogs", "/v1/callLogs/view", "/v1/hangupReasons", "/v1/callLogs/search"],
)
def test_every_endpoint_rejects_a_wrong_sign_with_an_http_200_envelope(sim: Crm, endpoint: str) -> None:
    params = {
        **sim.auth(secret="not-the-secret"),
        "startTime": "2026-11-19 00:00:00",
        "endTime": "2026-11-19 23:59:59",
        "callId": "x",
    }
    if endpoint.endswith("search"):
        r = sim.client.post(endpoint, params=params, json={"masterUserId": 1001})
    else:
        r = sim.client.get(endpoint, params=params)
    assert r.status_code == 200
    body = r.json()
    assert body["code"] == crm.CODE_SIGN and isinstance(body["code"], int)
    assert body["data"] is None
    assert "签名" in body["message"]


def test_wrong_email_missing_params_and_uppercase_sign_are_rejected(sim: Crm) -> None:
    # signed correctly for another email: the email is not ours
    r = sim.client.get("/v1/hangupReasons", params=sim.auth(email="other@example.com"))
    assert r.json()["code"] == crm.CODE_SIGN
    good = sim.auth()
    for missing in ("email", "timestamp", "sign"):
        params = {k: v for k, v in good.items() if k != missing}
        assert sim.client.get("/v1/hangupReasons", params=params).json()["code"] == crm.CODE_SIGN
    upper = {**good, "sign": good["sign"].upper()}
    assert sim.client.get("/v1/hangupReasons", params=upper).json()["code"] == crm.CODE_SIGN
    bad_ts = {**good, "timestamp": "yesterday"}
    assert sim.client.get("/v1/hangupReasons", params=bad_ts).json()["code"] == crm.CODE_SIGN


@pytest.mark.parametrize(
    "skew,code", [(-301, crm.CODE_SIGN_EXPIRED), (301, crm.CODE_SIGN_EXPIRED), (-300, 200), (299, 200)]
)
def test_timestamp_must_be_within_the_ttl_of_the_clock(sim: Crm, skew: int, code: int) -> None:
    body = sim.client.get("/v1/hangupReasons", params=sim.auth(ts=NOW + skew)).json()
    assert body["code"] == code
    if code != 200:
        assert "过期" in body["message"] and body["data"] is None


def test_milliseconds_timestamp_is_expired(sim: Crm) -> None:
    body = sim.client.get("/v1/hangupReasons", params=sim.auth(ts=NOW * 1000)).json()
    assert body["code"] == crm.CODE_SIGN_EXPIRED


def test_credentials_and_ttl_come_from_settings() -> None:
    s = Crm(email="ops@corp.example", secret_key="s3", sign_ttl_s=10)
    assert s.reasons()["code"] == 200
    assert (
        s.client.get("/v1/hangupReasons", params=s.auth(ts=NOW - 11)).json()["code"] == crm.CODE_SIGN_EXPIRED
    )
    default = crm.Settings()
    assert (default.email, default.secret_key, default.sign_ttl_s) == (
        "sim@example.com",
        "sim-crm-secret",
        300,
    )


# ---- /v1/callLogs ---------------------------------------------------------------------------


def test_a_full_day_has_volume_calls_newest_first_without_gaps(sim: Crm) -> None:
    d = day_str(DAY)
    calls = sim.all_logs(f"{d} 00:00:00", f"{d} 23:59:59")
    assert len(calls) == 500
    assert sim.logs(f"{d} 00:00:00", f"{d} 23:59:59")["data"]["total"] == 500
    ids = [c["id"] for c in calls]
    assert ids == sorted(ids, reverse=True)
    assert set(ids) == {DAY * 10_000_000 + i for i in range(500)}
    assert [c["createTime"] for c in reversed(calls)] == brute_force_times(DAY, 500)
    assert len({c["callId"] for c in calls}) == 500


def test_page_shape_and_default_page_size(sim: Crm) -> None:
    d = day_str(DAY)
    body = sim.logs(f"{d} 00:00:00", f"{d} 23:59:59")
    data = body["data"]
    assert set(data) == {"list", "pageNum", "pageSize", "total", "paging"}
    assert (data["pageNum"], data["pageSize"], data["paging"]) == (1, 20, None)
    assert len(data["list"]) == 20
    last = sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageNum=25)["data"]
    assert len(last["list"]) == 20 and last["list"][-1]["id"] == DAY * 10_000_000
    beyond = sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageNum=26)["data"]
    assert beyond["list"] == [] and beyond["total"] == 500


def test_page_size_above_100_is_an_error_not_a_clamp(sim: Crm) -> None:
    d = day_str(DAY)
    assert len(sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=100)["data"]["list"]) == 100
    body = sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=101)
    assert body["code"] != 200 and isinstance(body["code"], int) and 400 <= body["code"] < 500
    assert "pageSize" in body["message"]
    assert body["data"] is None and body["visible"] is False


@pytest.mark.parametrize(
    "params,name",
    [
        ({"pageSize": 0}, "pageSize"),
        ({"pageNum": 0}, "pageNum"),
        ({"pageNum": "x"}, "pageNum"),
        ({"startTime": "2026-11-19T00:00:00"}, "startTime"),
        ({"endTime": ""}, "endTime"),
    ],
)
def test_bad_parameters_answer_an_error_envelope_naming_them(sim: Crm, params: dict, name: str) -> None:
    base = {"startTime": "2026-11-19 00:00:00", "endTime": "2026-11-19 23:59:59", **params}
    start, end = base.pop("startTime"), base.pop("endTime")
    body = sim.logs(start, end, **base)
    assert body["code"] == crm.CODE_BAD_PARAM and name in body["message"] and body["data"] is None


def test_window_is_inclusive_at_both_ends(sim: Crm) -> None:
    times = brute_force_times(DAY, 500)
    t = times[123]
    one = sim.logs(t, t)["data"]
    assert one["total"] == 1 and one["list"][0]["createTime"] == t
    assert one["list"][0]["id"] == DAY * 10_000_000 + 123
    # between two calls: nothing
    between = (datetime.fromisoformat(t) + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    assert sim.logs(between, between)["data"]["total"] == 0
    # an arbitrary window agrees with a brute-force count
    start, end = "2026-11-19 07:13:05", "2026-11-19 19:02:58"
    expected = [x for x in times if start <= x <= end]
    calls = sim.all_logs(start, end)
    assert len(calls) == len(expected) == sim.logs(start, end)["data"]["total"]
    assert sorted(c["createTime"] for c in calls) == expected


def test_windows_spanning_days_page_across_day_boundaries(sim: Crm) -> None:
    start, end = "2026-11-16 22:00:00", "2026-11-19 01:30:00"
    expected = [
        t for day in range(DAY - 3, DAY + 1) for t in brute_force_times(day, 500) if start <= t <= end
    ]
    body = sim.logs(start, end)
    assert body["data"]["total"] == len(expected)
    calls = sim.all_logs(start, end, page_size=37)
    assert [c["createTime"] for c in reversed(calls)] == expected
    assert len({c["id"] for c in calls}) == len(expected)
    assert sim.logs(end, start)["data"]["total"] == 0  # reversed window: empty


def test_only_calls_up_to_the_clock_exist(sim: Crm) -> None:
    today = day_str(TODAY)
    expected = [t for t in brute_force_times(TODAY, 500) if t <= f"{today} 12:00:00"]
    body = sim.logs(f"{today} 00:00:00", f"{today} 23:59:59", pageSize=5)
    assert body["data"]["total"] == len(expected) < 500
    assert body["data"]["list"][0]["createTime"] == expected[-1]
    # moving the clock makes more calls appear
    sim.state.clock.set(now=NOW + 3600)
    later = sim.client.get(
        "/v1/callLogs",
        params={**sim.auth(ts=NOW + 3600), "startTime": f"{today} 00:00:00", "endTime": f"{today} 23:59:59"},
    ).json()
    assert later["data"]["total"] > len(expected)
    sim.state.clock.set(now=NOW)
    future = sim.logs(f"{day_str(TODAY + 1)} 00:00:00", f"{day_str(TODAY + 1)} 23:59:59")
    assert future["data"] == {"list": [], "pageNum": 1, "pageSize": 20, "total": 0, "paging": None}


def test_huge_volume_and_long_window_are_arithmetic() -> None:
    sim = Crm(volume=5_000_000)
    body = sim.logs("2024-01-01 00:00:00", "2026-11-19 23:59:59", pageNum=3, pageSize=100)
    days = DAY - (date(2024, 1, 1).toordinal() - date(1970, 1, 1).toordinal()) + 1
    assert body["data"]["total"] == days * 5_000_000
    ids = [c["id"] for c in body["data"]["list"]]
    assert ids == [DAY * 10_000_000 + 5_000_000 - 1 - k for k in range(200, 300)]
    oldest_page = body["data"]["total"] // 100
    oldest = sim.logs("2024-01-01 00:00:00", "2026-11-19 23:59:59", pageNum=oldest_page, pageSize=100)
    assert oldest["data"]["list"][-1]["createTime"] == "2024-01-01 00:00:00"


def test_record_fields_have_the_samples_types_and_quirks(sim: Crm) -> None:
    calls = sim.all_logs(f"{day_str(DAY - 2)} 00:00:00", f"{day_str(DAY)} 23:59:59")
    assert len(calls) == 1500
    keys = {
        "id",
        "createTime",
        "customerNumber",
        "province",
        "city",
        "agentName",
        "duration",
        "result",
        "ringingDuration",
        "spNumber",
        "callType",
        "seatType",
        "dropSide",
        "hangupCauseId",
        "callId",
        "customerName",
        "businessId",
        "businessLogType",
        "conversationId",
    }
    seen: dict[str, set] = {}
    for c in calls:
        assert set(c) == keys
        assert isinstance(c["id"], int)
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", c["createTime"])
        assert isinstance(c["spNumber"], str) and c["spNumber"].startswith("0")
        assert UUID_RE.match(c["callId"])
        assert isinstance(c["customerNumber"], str) and re.fullmatch(r"1[3-9]\d{9}", c["customerNumber"])
        assert c["result"] in range(1, 6) and c["callType"] in range(1, 4)
        assert isinstance(c["ringingDuration"], int) and isinstance(c["duration"], int)
        assert c["seatType"] in (None, 1, 2) and c["dropSide"] in (None, 1, 2)
        assert c["businessLogType"] in (None, 1, 2, 3, 4)
        assert c["hangupCauseId"] is None or c["hangupCauseId"] in range(1, 19) or c["hangupCauseId"] == 99
        assert c["province"] is None or isinstance(c["province"], int)
        assert c["city"] is None or isinstance(c["city"], int)
        assert c["businessId"] is None or isinstance(c["businessId"], int)
        assert c["customerName"] is None or isinstance(c["customerName"], str)
        assert c["agentName"] is None or isinstance(c["agentName"], str)
        conv = c["conversationId"]
        assert UUID_RE.match(conv) or (conv.isdigit() and len(conv) <= 8)
        for k, v in c.items():
            seen.setdefault(k, set()).add(
                "uuid"
                if k == "conversationId" and UUID_RE.match(v)
                else v
                if k == "hangupCauseId"
                else type(v)
            )
    # every nullable field shows both faces, and the out-of-enum hangup cause appears
    for k in (
        "province",
        "city",
        "agentName",
        "seatType",
        "dropSide",
        "customerName",
        "businessId",
        "businessLogType",
    ):
        assert type(None) in seen[k] and len(seen[k]) == 2, k
    assert 99 in seen["hangupCauseId"] and None in seen["hangupCauseId"]
    assert {"uuid", str} <= seen["conversationId"]
    assert {c["result"] for c in calls} == {1, 2, 3, 4, 5}
    assert {c["callType"] for c in calls} == {1, 2, 3}
    assert len({c["spNumber"] for c in calls}) > 1


def test_data_is_deterministic_per_seed() -> None:
    a, b, other = Crm(), Crm(), Crm(seed=8)
    window = (f"{day_str(DAY)} 08:00:00", f"{day_str(DAY)} 09:00:00")
    assert a.logs(*window) == b.logs(*window)
    pa, po = a.logs(*window)["data"]["list"], other.logs(*window)["data"]["list"]
    assert [c["id"] for c in pa] == [c["id"] for c in po]  # ids depend on day and index only
    assert {c["callId"] for c in pa}.isdisjoint({c["callId"] for c in po})


def test_total_skew_setting_makes_total_disagree() -> None:
    d = day_str(DAY)
    assert Crm(total_skew=3).logs(f"{d} 00:00:00", f"{d} 23:59:59")["data"]["total"] == 503
    assert Crm().logs(f"{d} 00:00:00", f"{d} 23:59:59")["data"]["total"] == 500


def test_max_page_size_setting() -> None:
    sim = Crm(max_page_size=50)
    d = day_str(DAY)
    assert "pageSize" in sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=51)["message"]
    assert len(sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=50)["data"]["list"]) == 50


# ---- /v1/callLogs/view ----------------------------------------------------------------------


def test_view_returns_the_call_with_its_recordings(sim: Crm) -> None:
    calls = sim.all_logs(f"{day_str(DAY)} 00:00:00", f"{day_str(DAY)} 23:59:59")
    counts = set()
    for call in calls[:120]:
        body = sim.view(call["callId"])
        assert body["code"] == 200
        assert isinstance(body["data"], list) and len(body["data"]) == 1
        rec = body["data"][0]
        assert {k: rec[k] for k in call} == call
        assert "ivrDuration" not in rec
        recs = rec["callLogRecordFoundResponseList"]
        assert recs is None or isinstance(recs, list)
        recs = recs or []
        counts.add(len(recs))
        assert 0 <= len(recs) <= 3
        urls = [r["recordUrl"] for r in recs]
        assert len(set(urls)) == len(urls) and all(isinstance(u, str) and u for u in urls)
        if recs:
            assert rec["channelUserType"] in (1, 2, 4)
            assert call["duration"] > 0
        assert sim.view(call["callId"]) == body  # deterministic
    assert counts == {0, 1, 2, 3}


def test_view_of_an_unknown_or_future_call_is_empty(sim: Crm) -> None:
    for bogus in ("123", "3ec56e1b-155a-4677-703f-8bb0a4a91e13", crm.call_id(8, DAY, 5)):
        body = sim.view(bogus)
        assert body["code"] == 200 and body["data"] == []
    future = crm.call_id(sim.settings.seed, TODAY, 499)  # 23:57 today, after the clock
    assert sim.view(future)["data"] == []
    beyond_volume = crm.call_id(sim.settings.seed, DAY, 500)
    assert sim.view(beyond_volume)["data"] == []
    assert sim.view(crm.call_id(sim.settings.seed, DAY, 499))["data"][0]["id"] == DAY * 10_000_000 + 499
    missing = sim.client.get("/v1/callLogs/view", params=sim.auth()).json()
    assert missing["code"] == crm.CODE_BAD_PARAM and "callId" in missing["message"]


def test_call_id_round_trips() -> None:
    for day, i in [(0, 0), (DAY, 499), (40_000, 9_999_999)]:
        cid = crm.call_id(3, day, i)
        assert UUID_RE.match(cid)
        assert crm.decode_call_id(3, cid) == (day, i)
        assert crm.decode_call_id(4, cid) is None
        assert crm.decode_call_id(3, cid.upper()) == (day, i)


# ---- /v1/hangupReasons ----------------------------------------------------------------------


def test_hangup_reasons_are_the_seeds_eighteen(sim: Crm) -> None:
    body = sim.reasons()
    assert body["paging"] == {"pageNum": 1, "pageSize": 18, "total": 18}
    assert body["exception"] is None and body["extra"] is None
    data = body["data"]
    assert [r["id"] for r in data] == list(range(1, 19))
    names = {r["id"]: r["name"] for r in data}
    assert names[7] == "暂停服务\t" and names[16] == "改号\t"
    assert [n for n in names.values() if n.endswith("\t")] == ["暂停服务\t", "改号\t"]
    assert names[1] == "关机" and names[13] == "无人接听" and names[18] == "稍后再拨"


# ---- /v1/callLogs/search --------------------------------------------------------------------


def brute_force_agent_calls(s: crm.Settings, agent: int) -> list[tuple[int, int]]:
    now = datetime.fromtimestamp(NOW, TZ).replace(tzinfo=None)
    start = now - timedelta(days=s.search_days)
    out = []
    for day in range(TODAY - 8, TODAY + 1):
        for i, t in enumerate(brute_force_times(day, s.volume)):
            if start <= datetime.fromisoformat(t) <= now and crm.agent_of(s, day, i) == agent:
                out.append((day, i))
    return sorted(out, reverse=True)


def test_search_returns_an_agents_last_seven_days_newest_first(sim: Crm) -> None:
    agent = 1003
    expected = brute_force_agent_calls(sim.settings, agent)
    body = sim.search({"masterUserId": agent})
    assert body["code"] == 200
    data = body["data"]
    assert set(data) >= {"list", "pageNum", "pageSize", "total"}
    assert (data["pageNum"], data["pageSize"], data["total"]) == (1, 20, len(expected))
    got: list[dict] = []
    page = 1
    while True:
        chunk = sim.search({"masterUserId": agent, "pageNum": page, "pageSize": 100})["data"]["list"]
        got += chunk
        if len(chunk) < 100:
            break
        page += 1
    assert [c["id"] for c in got] == [d * 10_000_000 + i for d, i in expected]
    name = crm.agent_display_name(sim.settings, agent)
    assert {c["agentName"] for c in got} == {name, None}
    for c in got:
        assert "ivrDuration" in c and (c["ivrDuration"] is None or isinstance(c["ivrDuration"], int))
        assert "channelUserType" in c and "callLogRecordFoundResponseList" in c
        assert isinstance(c["spNumber"], str)
    assert {type(c["ivrDuration"]) for c in got} == {int, type(None)}
    # the same call as in /view
    first = got[0]
    viewed = sim.view(first["callId"])["data"][0]
    assert viewed == {k: v for k, v in first.items() if k != "ivrDuration"}


def test_search_agents_partition_the_calls(sim: Crm) -> None:
    totals = [sim.search({"masterUserId": a})["data"]["total"] for a in sim.settings.agent_ids]
    assert sum(totals) == sum(
        1
        for day in range(TODAY - 8, TODAY + 1)
        for t in brute_force_times(day, 500)
        if "2026-11-13 12:00:00" <= t <= "2026-11-20 12:00:00"
    )


def test_search_unknown_agent_and_bad_bodies(sim: Crm) -> None:
    empty = sim.search({"masterUserId": 1})["data"]
    assert empty["list"] == [] and empty["total"] == 0
    assert sim.search({"masterUserId": "1002"})["data"]["total"] > 0  # numeric string accepted
    assert sim.search({})["code"] == crm.CODE_BAD_PARAM
    too_big = sim.search({"masterUserId": 1002, "pageSize": 101})
    assert too_big["code"] == crm.CODE_BAD_PARAM and "pageSize" in too_big["message"]
    r = sim.client.post("/v1/callLogs/search", params=sim.auth(), content=b"{not json")
    assert r.status_code == 200 and r.json()["code"] == crm.CODE_BAD_PARAM
    assert sim.client.get("/v1/callLogs/search", params=sim.auth()).status_code == 405


# ---- faults ---------------------------------------------------------------------------------


def test_envelope_fault_answers_system_busy(sim: Crm) -> None:
    sim.state.faults.arm("/v1/callLogs", Fault(mode="envelope", times=1))
    d = day_str(DAY)
    r = sim.client.get(
        "/v1/callLogs", params={**sim.auth(), "startTime": f"{d} 00:00:00", "endTime": f"{d} 23:59:59"}
    )
    assert r.status_code == 200
    assert r.json() == {"code": 500, "message": "系统繁忙", "visible": False, "data": None}
    assert sim.logs(f"{d} 00:00:00", f"{d} 23:59:59")["code"] == 200  # used up


@pytest.mark.parametrize("endpoint", ["/v1/callLogs/view", "/v1/hangupReasons", "/v1/callLogs/search"])
def test_envelope_fault_on_other_endpoints(sim: Crm, endpoint: str) -> None:
    sim.state.faults.arm(endpoint, Fault(mode="envelope"))
    if endpoint.endswith("search"):
        body = sim.search({"masterUserId": 1001})
    elif endpoint.endswith("view"):
        body = sim.view(crm.call_id(7, DAY, 1))
    else:
        body = sim.reasons()
    assert body["code"] == 500 and body["data"] is None


def test_drift_fault_retypes_create_time_and_sp_number(sim: Crm) -> None:
    d = day_str(DAY)
    normal = sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=5)["data"]["list"]
    sim.state.faults.arm("/v1/callLogs", Fault(mode="drift", times=1))
    drifted = sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=5)["data"]["list"]
    for n, dr in zip(normal, drifted, strict=True):
        local = datetime.strptime(n["createTime"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=TZ)
        assert dr["createTime"] == int(local.timestamp()) * 1000
        assert isinstance(dr["spNumber"], int) and dr["spNumber"] == int(n["spNumber"])
        assert str(dr["spNumber"]) != n["spNumber"]  # the leading zero is lost
        assert dr["id"] == n["id"]
    assert sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=5)["data"]["list"] == normal


def test_drift_fault_on_search_view_and_reasons(sim: Crm) -> None:
    sim.state.faults.arm("/v1/callLogs/search", Fault(mode="drift"))
    assert all(isinstance(c["createTime"], int) for c in sim.search({"masterUserId": 1001})["data"]["list"])
    sim.state.faults.arm("/v1/callLogs/view", Fault(mode="drift"))
    assert isinstance(sim.view(crm.call_id(7, DAY, 1))["data"][0]["spNumber"], int)
    sim.state.faults.arm("/v1/hangupReasons", Fault(mode="drift"))
    assert sim.reasons()["data"][0]["id"] == "1"


def test_generic_faults_and_request_counts(sim: Crm) -> None:
    sim.state.faults.arm("/v1/hangupReasons", Fault(mode="503", times=1))
    assert sim.client.get("/v1/hangupReasons", params=sim.auth()).status_code == 503
    assert sim.reasons()["code"] == 200
    assert sim.state.requests["crm /v1/hangupReasons"] == 2


# ---- module contract ------------------------------------------------------------------------


def test_env_points_a_client_at_the_simulator() -> None:
    s = crm.Settings()
    e = crm.env(s, "http://127.0.0.1:8765/crm")
    assert e["CRM_BASE_URL"] == "http://127.0.0.1:8765/crm"
    assert (e["CRM_EMAIL"], e["CRM_SECRET_KEY"], e["CRM_TIMEZONE"]) == (
        "sim@example.com",
        "sim-crm-secret",
        "Asia/Shanghai",
    )
    ids = e["CRM_AGENT_IDS"].split(",")
    assert 2 <= len(ids) <= 3 and all(int(i) in s.agent_ids for i in ids)
    assert s.agent_ids == tuple(range(1001, 1011)) and s.volume == 500 and s.max_page_size == 100


def test_other_timezone_moves_the_window_edges() -> None:
    sim = Crm(timezone="UTC")
    # NOW is 04:00 UTC on 2026-11-20: calls up to 04:00 exist
    today = day_str(TODAY)
    expected = [t for t in brute_force_times(TODAY, 500) if t <= f"{today} 04:00:00"]
    assert sim.logs(f"{today} 00:00:00", f"{today} 23:59:59")["data"]["total"] == len(expected)


# ---- rendering: the page bodies are the reference's bytes -----------------------------------
#
# The endpoints write their JSON directly instead of building make_call's dicts and running
# JSONResponse over them. The old way stays here as the oracle: the same records, rendered
# by starlette's own JSONResponse (ensure_ascii=False, no spaces), must give the same bytes.


def reference_body(payload: object) -> bytes:
    return JSONResponse(payload).body


def reference_page(
    s: crm.Settings, calls: list[tuple[int, int]], page_num: int, page_size: int, total: int, **kw
) -> bytes:
    items = [crm.make_call(s, day, i, **kw) for day, i in calls]
    return reference_body(crm.envelope(crm._page_data(items, page_num, page_size, total)))


RENDER_SETTINGS = [
    crm.Settings(),  # the defaults the tests use: seed 7, 500 a day, ten named agents
    crm.Settings(seed=2, volume=200_000, agent_ids=(5, 6, 7)),  # the benchmark's volume
    crm.Settings(seed=99, volume=9_999_999, agent_ids=tuple(range(1, 14))),  # agents without a name
    crm.Settings(seed=0, volume=1, agent_ids=(42,)),
]


@pytest.mark.parametrize("s", RENDER_SETTINGS, ids=lambda s: f"seed{s.seed}-volume{s.volume}")
@pytest.mark.parametrize("kw", [{}, {"detail": True}, {"detail": True, "ivr": True}, {"ivr": True}])
def test_rendered_calls_are_the_reference_json_byte_for_byte(s: crm.Settings, kw: dict) -> None:
    rnd = random.Random(s.seed)
    calls = [(0, 0), (DAY, s.volume - 1), (40_000, 0)]
    calls += [(rnd.randrange(0, 40_000), rnd.randrange(s.volume)) for _ in range(2500)]
    reference = [crm.make_call(s, day, i, **kw) for day, i in calls]
    runs = [(day, (i,)) for day, i in calls]
    body = crm.render_calls(s, runs, **kw)
    assert body == reference_body(reference)
    assert json.loads(body) == reference
    # the sample reaches every branch of the derivation
    for key in ("province", "city", "agentName", "seatType", "dropSide", "customerName", "businessId"):
        assert {r[key] is None for r in reference} == {True, False}, key
    assert {r["hangupCauseId"] for r in reference} >= {None, crm.UNKNOWN_HANGUP_CAUSE, 1}
    assert {bool(UUID_RE.match(r["conversationId"])) for r in reference} == {True, False}
    assert any(not r["customerName"].isascii() for r in reference if r["customerName"])
    if kw.get("detail"):
        lists = [r["callLogRecordFoundResponseList"] for r in reference]
        assert {None if x is None else len(x) for x in lists} == {None, 0, 1, 2, 3}
        assert {r["channelUserType"] for r in reference} == {None, 1, 2, 4}
    if kw.get("ivr"):
        assert {r["ivrDuration"] is None for r in reference} == {True, False}


def test_rendering_runs_of_consecutive_calls_and_nothing() -> None:
    s = crm.Settings(volume=200_000)
    runs = [(DAY, range(150_000, 149_900, -1)), (DAY - 1, range(0, 7)), (DAY + 3, ())]
    calls = [(day, i) for day, indices in runs for i in indices]
    assert crm.render_calls(s, runs) == reference_body([crm.make_call(s, d, i) for d, i in calls])
    assert crm.render_calls(s, []) == b"[]" == reference_body([])


def window_pages(sim: Crm) -> list[tuple[str, str, int]]:
    """(start, end, page size) of the windows the page tests walk."""
    d, today = day_str(DAY), day_str(TODAY)
    return [
        (f"{d} 00:00:00", f"{d} 23:59:59", 100),
        ("2026-11-16 22:00:00", "2026-11-19 01:30:00", 37),  # across day boundaries
        (f"{today} 00:00:00", f"{today} 23:59:59", 7),  # up to the clock
        (f"{d} 07:13:05", f"{d} 07:13:05", 1),  # one call or none
        (f"{d} 23:59:59", f"{d} 00:00:00", 20),  # reversed: empty
    ]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"newest_first": False},
        {"total_skew": 3, "volume": 200_000},
        {"timezone": "UTC", "volume": 86_400},
    ],
    ids=["defaults", "oldest-first", "skew-200k", "utc-86400"],
)
def test_call_log_pages_are_the_reference_responses(settings: dict) -> None:
    sim = Crm(**settings)
    s = sim.settings
    now = crm.now_local(s, NOW)
    for start, end, size in window_pages(sim):
        win = crm.Window(s, datetime.fromisoformat(start), min(datetime.fromisoformat(end), now))
        pages = max(1, -(-win.total // size))
        for page in sorted({1, 2, max(1, pages // 2), pages, pages + 1}):
            r = sim.client.get(
                "/v1/callLogs",
                params={**sim.auth(), "startTime": start, "endTime": end, "pageNum": page, "pageSize": size},
            )
            first, last = (page - 1) * size, min(win.total, page * size)
            positions = (
                range(first, last)
                if s.newest_first
                else range(win.total - 1 - first, win.total - 1 - last, -1)
            )
            calls = [win.at(p) for p in positions]
            assert r.content == reference_page(s, calls, page, size, win.total + s.total_skew), (start, page)
            assert r.headers["content-type"] == "application/json"


def test_view_and_search_are_the_reference_responses(sim: Crm) -> None:
    s = sim.settings
    for i in (0, 1, 2, 3, 4, 250, 499):
        body = sim.client.get(
            "/v1/callLogs/view", params={**sim.auth(), "callId": crm.call_id(s.seed, DAY, i)}
        )
        assert body.content == reference_body(crm.envelope([crm.make_call(s, DAY, i, detail=True)]))
    unknown = sim.client.get("/v1/callLogs/view", params={**sim.auth(), "callId": crm.call_id(8, DAY, 1)})
    assert unknown.content == reference_body(crm.envelope([]))
    end = crm.now_local(s, NOW)
    for agent, page, size in [(1003, 1, 20), (1003, 2, 100), (1007, 5, 13), (1, 1, 20), (1003, 99, 100)]:
        r = sim.client.post(
            "/v1/callLogs/search",
            params=sim.auth(),
            json={"masterUserId": agent, "pageNum": page, "pageSize": size},
        )
        total, calls = 0, []
        if agent in s.agent_ids:
            total, calls = crm._agent_calls(s, agent, end - timedelta(days=7), end, (page - 1) * size, size)
        assert r.content == reference_page(s, calls, page, size, total, detail=True, ivr=True), (agent, page)


def test_truncated_fault_cuts_the_rendered_page(sim: Crm) -> None:
    d = day_str(DAY)
    params = {**sim.auth(), "startTime": f"{d} 00:00:00", "endTime": f"{d} 23:59:59", "pageSize": 100}
    whole = sim.client.get("/v1/callLogs", params=params).content
    sim.state.faults.arm("/v1/callLogs", Fault(mode="truncated"))
    cut = sim.client.get("/v1/callLogs", params=params)
    assert cut.status_code == 200 and cut.content == whole[: len(whole) // 2]
    with pytest.raises(ValueError):
        json.loads(cut.content)


def test_window_runs_are_its_positions_in_order() -> None:
    rnd = random.Random(5)
    for volume in (1, 7, 500, 86_400, 200_000):
        s = crm.Settings(volume=volume)
        for _ in range(40):
            start = datetime(2026, 11, 1) + timedelta(seconds=rnd.randrange(10 * 86_400))
            win = crm.Window(s, start, start + timedelta(seconds=rnd.randrange(4 * 86_400)))
            first = rnd.randrange(win.total + 3)
            last = min(win.total, first + rnd.randrange(1, 120))
            newest = [win.at(p) for p in range(first, last)]
            oldest = [win.at(win.total - 1 - p) for p in range(first, last)]
            assert [(d, i) for d, r in win.runs(first, last) for i in r] == newest
            assert [(d, i) for d, r in win.runs(first, last, newest_first=False) for i in r] == oldest


def test_query_parameters_are_read_as_starlette_reads_them() -> None:
    rnd = random.Random(3)
    pieces = [
        "a",
        "email",
        "=",
        "&",
        "+",
        "%",
        "%3A",
        "%zz",
        "%e4%b8%ad",
        "%E4",
        "x=1",
        "&&",
        ";",
        " ",
        "中",
        "%2B",
    ]
    cases = ["", "a", "a=", "=a", "a=1&a=2", "&a=1&", "a=b=c", "a+b=c+d", "k=%3A%3a", "k=%", "k=%4", "k=%ff"]
    cases += ["".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 8))) for _ in range(3000)]
    for case in cases:
        for raw in (case.encode(), case.encode("latin-1", "replace")):
            request = Request({"type": "http", "query_string": raw, "headers": []})
            assert crm._query(request) == dict(request.query_params), raw


# ---- a vendor that lost, deleted or garbled data --------------------------------------------


def test_empty_fault_answers_no_records_on_every_endpoint(sim: Crm) -> None:
    d = day_str(DAY)
    for endpoint in ("/v1/callLogs", "/v1/callLogs/view", "/v1/hangupReasons", "/v1/callLogs/search"):
        sim.state.faults.arm(endpoint, Fault(mode="empty", times=1))
    body = sim.logs(f"{d} 00:00:00", f"{d} 23:59:59", pageSize=100)
    assert body == {
        "code": 200,
        "message": "OK",
        "visible": False,
        "data": {"list": [], "pageNum": 1, "pageSize": 100, "total": 0, "paging": None},
    }
    assert sim.view(crm.call_id(7, DAY, 1)) == {"code": 200, "message": "OK", "visible": False, "data": []}
    reasons = sim.reasons()
    assert reasons["code"] == 200 and reasons["data"] == []
    assert reasons["paging"] == {"pageNum": 1, "pageSize": 0, "total": 0}
    search = sim.search({"masterUserId": 1003})
    assert search["code"] == 200 and search["data"]["list"] == [] and search["data"]["total"] == 0
    # used up: the vendor has its data again
    assert sim.logs(f"{d} 00:00:00", f"{d} 23:59:59")["data"]["total"] == 500
    assert len(sim.view(crm.call_id(7, DAY, 1))["data"]) == 1
    assert len(sim.reasons()["data"]) == 18
    assert sim.search({"masterUserId": 1003})["data"]["total"] > 0


def test_empty_fault_still_checks_the_signature(sim: Crm) -> None:
    sim.state.faults.arm("/v1/callLogs", Fault(mode="empty", times=-1))
    r = sim.client.get(
        "/v1/callLogs",
        params={
            **sim.auth(secret="wrong"),
            "startTime": "2026-11-19 00:00:00",
            "endTime": "2026-11-19 23:59:59",
        },
    )
    assert r.json()["code"] == crm.CODE_SIGN


POISON_TEXT = {
    "nul": ("\x00", '\\u0000"'),
    "surrogate": ("\ud800", '\\ud800"'),
    "bignum": (None, ":1e999999,"),
}


@pytest.mark.parametrize("variant", sorted(POISON_TEXT))
def test_poison_garbles_the_middle_record_of_a_call_log_page(sim: Crm, variant: str) -> None:
    d = day_str(DAY)
    params = {**sim.auth(), "startTime": f"{d} 00:00:00", "endTime": f"{d} 23:59:59", "pageSize": 100}
    normal = sim.client.get("/v1/callLogs", params=params).json()["data"]["list"]
    sim.state.faults.arm("/v1/callLogs", Fault(mode="poison", variant=variant))
    r = sim.client.get("/v1/callLogs", params=params)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    char, text = POISON_TEXT[variant]
    assert r.content.count(text.encode()) == 1  # written as JSON text, exactly once
    body = json.loads(r.content)  # valid JSON: a vendor's body would be
    assert body["code"] == 200 and body["data"]["total"] == 500
    page = body["data"]["list"]
    assert len(page) == 100
    bad = page[50]
    if char is None:
        assert bad["duration"] == float("inf")  # what Python makes of 1e999999
        assert {**bad, "duration": normal[50]["duration"]} == normal[50]
    else:
        name = normal[50]["customerName"] or crm.CUSTOMER_NAMES[3]
        assert bad["customerName"] == name + char
        assert {**bad, "customerName": normal[50]["customerName"]} == normal[50]
    assert page[:50] + page[51:] == normal[:50] + normal[51:]
    assert sim.client.get("/v1/callLogs", params=params).json()["data"]["list"] == normal  # used up


@pytest.mark.parametrize("variant", sorted(POISON_TEXT))
def test_poison_on_view_search_and_hangup_reasons(sim: Crm, variant: str) -> None:
    char, text = POISON_TEXT[variant]
    for endpoint in ("/v1/callLogs/view", "/v1/callLogs/search", "/v1/hangupReasons"):
        sim.state.faults.arm(endpoint, Fault(mode="poison", variant=variant))
    view = sim.client.get("/v1/callLogs/view", params={**sim.auth(), "callId": crm.call_id(7, DAY, 3)})
    search = sim.client.post("/v1/callLogs/search", params=sim.auth(), json={"masterUserId": 1003})
    reasons = sim.client.get("/v1/hangupReasons", params=sim.auth())
    for r in (view, search):
        assert r.content.count(text.encode()) == 1
    viewed = json.loads(view.content)["data"][0]
    listed = json.loads(search.content)["data"]["list"]
    reason = json.loads(reasons.content)["data"][9]  # the middle one of 18
    if char is None:
        assert viewed["duration"] == listed[10]["duration"] == float("inf")
        assert reasons.content.count(b'"id":1e999999,') == 1 and reason["id"] == float("inf")
    else:
        assert viewed["customerName"].endswith(char) and listed[10]["customerName"].endswith(char)
        assert reasons.content.count(text.encode()) == 1 and reason["name"] == crm.HANGUP_REASONS[9][1] + char


def test_deleted_calls_leave_every_page_and_later_calls_move_up(sim: Crm) -> None:
    d = day_str(DAY)
    window = (f"{d} 00:00:00", f"{d} 23:59:59")
    full = sim.all_logs(*window)
    # the newest call, the first of page 2 (at 100 a page), three in a row, the oldest
    gone = {full[0]["id"], full[100]["id"], full[300]["id"], full[301]["id"], full[302]["id"], full[-1]["id"]}
    other = {"isales:" + str(full[5]["id"]), "crm:not-a-number", f"crm:{(DAY - 9) * 10_000_000 + 4}"}
    sim.state.deleted |= {f"crm:{i}" for i in gone} | other
    expected = [c for c in full if c["id"] not in gone]
    for size in (100, 7, 1):
        assert sim.logs(*window, pageSize=size)["data"]["total"] == 494
        assert sim.all_logs(*window, page_size=size) == expected
    page2 = sim.logs(*window, pageNum=2, pageSize=100)["data"]["list"]
    assert page2[0] == full[102]  # 101 is the first live call after page 1's 100
    sim.state.deleted.clear()
    assert sim.all_logs(*window) == full  # every call is back


def test_a_deleted_call_is_gone_from_view_and_search(sim: Crm) -> None:
    agent = 1003
    calls = sim.search({"masterUserId": agent, "pageSize": 100})["data"]["list"]
    total = sim.search({"masterUserId": agent})["data"]["total"]
    victim = calls[3]
    sim.state.deleted.add(f"crm:{victim['id']}")
    assert sim.view(victim["callId"])["data"] == []
    after = sim.search({"masterUserId": agent, "pageSize": 100})["data"]
    assert after["total"] == total - 1
    assert after["list"][:99] == [c for c in calls if c["id"] != victim["id"]]
    assert sim.search({"masterUserId": agent, "pageNum": 2, "pageSize": 3})["data"]["list"][0] == calls[4]


def test_window_position_is_the_inverse_of_at() -> None:
    rnd = random.Random(11)
    for volume in (1, 7, 500, 86_400):
        s = crm.Settings(volume=volume)
        for _ in range(30):
            start = datetime(2026, 11, 1) + timedelta(seconds=rnd.randrange(10 * 86_400))
            win = crm.Window(s, start, start + timedelta(seconds=rnd.randrange(4 * 86_400)))
            for p in {0, win.total - 1, *(rnd.randrange(win.total) for _ in range(20))} if win.total else ():
                assert win.position(*win.at(p)) == p
            if win.total:
                day, i = win.at(0)
                assert win.position(day + 1, 0) is None and win.position(day, volume) is None
                oldest_day, oldest_i = win.at(win.total - 1)
                assert win.position(oldest_day - 1, volume - 1) is None
                if oldest_i > 0:
                    assert win.position(oldest_day, oldest_i - 1) is None
                if i < volume - 1:
                    assert win.position(day, i + 1) is None


def test_live_segments_skip_exactly_the_gone_positions() -> None:
    rnd = random.Random(13)
    for _ in range(2000):
        n = rnd.randrange(0, 60)
        gone = sorted(rnd.sample(range(n), rnd.randrange(0, n + 1))) if n else []
        live = [p for p in range(n) if p not in set(gone)]
        first = rnd.randrange(0, len(live) + 2)
        last = min(len(live), first + rnd.randrange(0, 20))
        segments = crm.live_segments(first, last, gone)
        assert [p for a, b in segments for p in range(a, b)] == live[first:last]
        assert all(b > a for a, b in segments)


@pytest.mark.parametrize(
    "settings",
    [{}, {"newest_first": False}, {"total_skew": 3, "volume": 200_000}],
    ids=["defaults", "oldest-first", "skew-200k"],
)
def test_pages_after_deletions_are_the_reference_responses(settings: dict) -> None:
    """The rendered fast path stays byte for byte the reference when calls are deleted."""
    sim = Crm(**settings)
    s = sim.settings
    rnd = random.Random(17)
    now = crm.now_local(s, NOW)
    for start, end, size in window_pages(sim):
        win = crm.Window(s, datetime.fromisoformat(start), min(datetime.fromisoformat(end), now))
        every = [win.at(p) for p in range(min(win.total, 3000))] if s.newest_first else []
        if not s.newest_first:
            every = [win.at(win.total - 1 - p) for p in range(min(win.total, 3000))]
        victims = set(rnd.sample(every, min(len(every), 12)))
        if len(every) > 2 * size:  # deletions around a page boundary
            victims |= {every[size - 1], every[size], every[size + 1]}
        sim.state.deleted = {f"crm:{day * crm.ID_DAY_FACTOR + i}" for day, i in victims}
        live = [c for c in every if c not in victims]
        total = win.total - len(victims)
        pages = max(1, -(-total // size))
        for page in sorted({1, 2, 3, max(1, pages // 2), pages, pages + 1}):
            r = sim.client.get(
                "/v1/callLogs",
                params={**sim.auth(), "startTime": start, "endTime": end, "pageNum": page, "pageSize": size},
            )
            first, last = (page - 1) * size, min(total, page * size)
            if last > len(live):
                continue  # beyond the part of a 200k-a-day window the oracle listed
            expected = reference_page(s, live[first:last], page, size, total + s.total_skew)
            assert r.content == expected, (start, page)
