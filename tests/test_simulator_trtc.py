"""The TRTC call-record simulator: UserSig checks, limits, paging, retention, quirks, faults."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import TLSSigAPIv2
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from pipelines.defs.sources.trtc.usersig import gen_usersig
from simulator import trtc
from simulator.common import Fault, SimState

NOW = 1_763_600_000  # 2025-11-20 00:53:20 UTC
DAY = 86_400
WEEK = 7 * DAY
PATH = "/trtc/v1/records/get_records_by_filter"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Api:
    def __init__(self, settings: trtc.Settings | None = None, now: float | None = NOW) -> None:
        self.settings = settings or trtc.Settings()
        self.state = SimState()
        if now is not None:
            self.state.clock.set(now=now)
        app = Starlette(routes=[Mount("/trtc", app=trtc.build_app(self.settings, self.state))])
        self.client = TestClient(app)

    def sig(self, identifier: str | None = None, key: str | None = None, t: int = NOW, expire: int = 3600):
        s = self.settings
        return gen_usersig(
            s.sdkappid, key or s.secret_key, identifier or s.admin_identifier, expire_s=expire, now=t
        )

    def query(self, **over: object) -> dict:
        s = self.settings
        q = {
            "sdkappid": s.sdkappid,
            "identifier": s.admin_identifier,
            "usersig": self.sig(),
            "random": 4294967295,
            "contenttype": "json",
        }
        q.update(over)
        return {k: v for k, v in q.items() if v is not None}

    def post(self, body: object, **over: object):
        content = body if isinstance(body, str) else json.dumps(body)
        return self.client.post(PATH, params=self.query(**over), content=content)

    def call(self, body: object, **over: object) -> dict:
        r = self.post(body, **over)
        assert r.status_code == 200, r.text
        return r.json()

    def walk(self, body: dict) -> tuple[list[dict], list[dict]]:
        """Every page of a window: (records, answers)."""
        records, answers, page = [], [], 1
        while True:
            a = self.call({**body, "page": page})
            answers.append(a)
            if a["errorCode"] != 0:
                return records, answers
            records += a["data"]["callRecordList"]
            if a["data"]["page"] == 0:
                return records, answers
            assert a["data"]["page"] == page + 1
            page += 1
            assert page < 10_000


@pytest.fixture(scope="module")
def api() -> Api:
    return Api()


def brute_count(volume: int, lo: int, hi: int) -> int:
    g0 = (lo // DAY) * volume
    g1 = (hi // DAY + 1) * volume
    return sum(lo <= trtc.start_ts(g, volume) <= hi for g in range(g0, g1))


# ---------------------------------------------------------------------------------------------
# UserSig


def test_valid_request_answers_success_envelope(api):
    a = api.call({"startTimestamp": NOW - 3600, "numberPerPage": 5})
    assert a["errorCode"] == 0 and a["errorMessage"] == "Success"
    assert re.fullmatch(r"[0-9a-f]{32}", a["requestId"])
    assert a["data"]["totalNum"] == brute_count(500, NOW - 3600, NOW)
    assert len(a["data"]["callRecordList"]) == 5


@pytest.mark.parametrize(
    ("over", "code"),
    [
        ({"usersig": "WRONGKEY"}, 70009),
        ({"usersig": "STALE"}, 70001),
        ({"usersig": None}, 70002),
        ({"usersig": "not-a-sig"}, 70003),
        ({"usersig": "eJyrVgrxCdZRslIyUqoFAA-4"}, 70003),  # valid Base64+zlib, no TLS fields
        ({"identifier": "alice"}, 70013),  # sig made for the admin
        ({"identifier": "alice", "usersig": "ALICE"}, 70403),  # a valid sig, but not the admin
        ({"usersig": "OTHERAPP"}, 70014),
        ({"sdkappid": 88888888}, 70020),
        ({"sdkappid": None}, 70020),
        ({"random": None}, 70402),
        ({"random": 4294967296}, 70402),
        ({"random": "-1"}, 70402),
        ({"contenttype": None}, 70402),
        ({"contenttype": "xml"}, 70402),
    ],
)
def test_auth_and_query_errors(api, over, code):
    s = api.settings
    sigs = {
        "WRONGKEY": api.sig(key="sim-other-key"),
        "STALE": api.sig(t=NOW - 3601, expire=3600),
        "ALICE": api.sig(identifier="alice"),
        "OTHERAPP": gen_usersig(s.sdkappid + 1, s.secret_key, s.admin_identifier, 3600, NOW),
    }
    if over.get("usersig") in sigs:
        over = {**over, "usersig": sigs[over["usersig"]]}
    r = api.post({"startTimestamp": NOW - 3600}, **over)
    assert r.status_code == 200
    a = r.json()
    assert a["errorCode"] == code, a
    assert a["errorMessage"] and "data" not in a


def test_expiry_boundary_follows_the_clock():
    api = Api()
    sig = api.sig(t=NOW - 100, expire=100)  # expires exactly now: still valid
    assert api.call({"startTimestamp": NOW - 3600}, usersig=sig)["errorCode"] == 0
    api.state.clock.set(now=NOW + 1)
    assert api.call({"startTimestamp": NOW - 3600}, usersig=sig)["errorCode"] == 70001


def test_official_package_sig_accepted_with_real_clock():
    api = Api(now=None)  # the clock runs with the wall clock, like the official signer
    s = api.settings
    sig = TLSSigAPIv2.TLSSigAPIv2(s.sdkappid, s.secret_key).gen_sig(s.admin_identifier)
    now = int(api.state.clock.now())
    assert api.call({"startTimestamp": now - 3600}, usersig=sig)["errorCode"] == 0
    # the official userbuf variant signs one more line; the simulator knows it
    sig = TLSSigAPIv2.TLSSigAPIv2(s.sdkappid, s.secret_key).gen_sig_with_userbuf(
        s.admin_identifier, 3600, b"abc"
    )
    assert api.call({"startTimestamp": now - 3600}, usersig=sig)["errorCode"] == 0


# ---------------------------------------------------------------------------------------------
# body limits


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 70402),
        ({"endTimestamp": NOW}, 70402),
        ({"startTimestamp": "1763590000"}, 70402),
        ({"startTimestamp": NOW - WEEK, "endTimestamp": NOW + 1}, 70402),  # 7 days + 1 s
        ({"startTimestamp": NOW - 10, "endTimestamp": NOW - 20}, 70402),
        ({"startTimestamp": NOW - DAY, "numberPerPage": 101}, 70402),
        ({"startTimestamp": NOW - DAY, "numberPerPage": -1}, 70402),
        ({"startTimestamp": NOW - DAY, "page": -2}, 70402),
        ({"startTimestamp": NOW - DAY, "callType": "conference"}, 70402),
        ({"startTimestamp": NOW - DAY, "callResult": 3}, 70402),
        ({"startTimestamp": NOW - DAY, "callResult": "no_such_result"}, 70011),
        ("{not json", 70402),
        ("[1, 2]", 70402),
    ],
)
def test_body_errors(api, body, code):
    a = api.call(body)
    assert a["errorCode"] == code, a


def test_defaults_end_plus_seven_days_and_page_size_100(api):
    start = NOW - 3 * DAY
    implicit = api.call({"startTimestamp": start})
    explicit = api.call({"startTimestamp": start, "endTimestamp": start + WEEK, "numberPerPage": 100})
    assert implicit["data"]["totalNum"] == explicit["data"]["totalNum"] == brute_count(500, start, NOW)
    assert len(implicit["data"]["callRecordList"]) == 100
    ids = [r["callId"] for r in implicit["data"]["callRecordList"]]
    assert ids == [r["callId"] for r in explicit["data"]["callRecordList"]]
    # exactly seven days is allowed
    assert api.call({"startTimestamp": NOW - WEEK, "endTimestamp": NOW})["errorCode"] == 0


# ---------------------------------------------------------------------------------------------
# paging, totals, retention


def test_walk_pages_reconciles_with_total(api):
    lo, hi = NOW - DAY - 777, NOW - 5 * 3600
    records, answers = api.walk({"startTimestamp": lo, "endTimestamp": hi, "numberPerPage": 37})
    total = answers[0]["data"]["totalNum"]
    assert total == brute_count(500, lo, hi) == len(records)
    assert {a["data"]["totalNum"] for a in answers} == {total}
    assert len({r["callId"] for r in records}) == total
    starts = [r["startCallTs"] for r in records]
    assert starts == sorted(starts) and lo <= starts[0] and starts[-1] <= hi
    assert [len(a["data"]["callRecordList"]) for a in answers[:-1]] == [37] * (len(answers) - 1)
    assert answers[-1]["data"]["page"] == 0
    # past the last page: success, true total, no records
    past = api.call({"startTimestamp": lo, "endTimestamp": hi, "numberPerPage": 37, "page": len(answers) + 1})
    assert past["errorCode"] == 0 and past["data"]["totalNum"] == total
    assert past["data"]["page"] == 0 and past["data"]["callRecordList"] == []


def test_window_ends_are_inclusive(api):
    t = trtc.start_ts(trtc.count_until(NOW - DAY, 500), 500)  # the first call after NOW - DAY
    a = api.call({"startTimestamp": t, "endTimestamp": t})
    assert a["data"]["totalNum"] == 1 and a["data"]["callRecordList"][0]["startCallTs"] == t
    assert api.call({"startTimestamp": t + 1, "endTimestamp": t + 1})["errorCode"] == 70011


def test_current_page_semantics_option():
    api = Api(trtc.Settings(page_semantics="current"))
    body = {"startTimestamp": NOW - 3600, "numberPerPage": 10}
    total = api.call(body)["data"]["totalNum"]
    last = -(-total // 10)
    assert api.call({**body, "page": 2})["data"]["page"] == 2
    assert api.call({**body, "page": last})["data"]["page"] == 0


def test_retention_and_future():
    api = Api()
    cutoff = NOW - WEEK
    # entirely older than seven days: gone
    assert api.call({"startTimestamp": cutoff - DAY, "endTimestamp": cutoff - 1})["errorCode"] == 70011
    a = api.call({"startTimestamp": cutoff - DAY, "endTimestamp": cutoff + 3600})
    assert a["data"]["totalNum"] == brute_count(500, cutoff, cutoff + 3600)
    assert min(r["startCallTs"] for r in a["data"]["callRecordList"]) >= cutoff
    # calls after now do not exist yet
    a = api.call({"startTimestamp": NOW - 1000, "endTimestamp": NOW + DAY})
    assert a["data"]["totalNum"] == brute_count(500, NOW - 1000, NOW)
    # a day later, the window's first day has expired and new calls exist
    api.state.clock.set(now=NOW + DAY)
    b = api.call(
        {"startTimestamp": cutoff - DAY, "endTimestamp": cutoff + 3600}, usersig=api.sig(t=NOW + DAY)
    )
    assert b["errorCode"] == 70011
    c = api.call({"startTimestamp": NOW - 1000, "endTimestamp": NOW + DAY}, usersig=api.sig(t=NOW + DAY))
    assert c["data"]["totalNum"] == brute_count(500, NOW - 1000, NOW + DAY)


def test_empty_window_is_70011(api):
    a = api.call({"startTimestamp": NOW + 10, "endTimestamp": NOW + 20})
    assert a == {"errorCode": 70011, "errorMessage": "未找到任何记录", "requestId": a["requestId"]}


def test_huge_volume_is_arithmetic():
    api = Api(trtc.Settings(volume=2_000_000))
    day0 = (NOW // DAY - 3) * DAY
    a = api.call({"startTimestamp": day0, "endTimestamp": day0 + DAY - 1, "page": 19_999})
    assert a["data"]["totalNum"] == 2_000_000
    recs = a["data"]["callRecordList"]
    assert len(recs) == 100 and day0 < recs[0]["startCallTs"] < day0 + DAY
    assert a["data"]["page"] == 20_000


# ---------------------------------------------------------------------------------------------
# determinism and data shape


def test_deterministic_and_page_independent():
    body = {"startTimestamp": NOW - 2 * DAY, "numberPerPage": 100}
    a, b = Api(), Api()
    page1 = a.call(body)["data"]["callRecordList"]
    assert page1 == b.call(body)["data"]["callRecordList"]
    page3 = a.call({**body, "numberPerPage": 10, "page": 3})["data"]["callRecordList"]
    assert page3 == page1[20:30]
    other = Api(trtc.Settings(seed=8)).call(body)["data"]["callRecordList"]
    assert [r["callId"] for r in other] != [r["callId"] for r in page1]
    assert [r["startCallTs"] for r in other] == [r["startCallTs"] for r in page1]


def test_record_shapes_and_quirks(api):
    records, _ = api.walk({"startTimestamp": NOW - 3 * DAY, "endTimestamp": NOW, "numberPerPage": 100})
    assert len(records) > 1400
    results = Counter((r["callType"], r["callResult"]) for r in records)
    assert {res for (t, res) in results if t == "group"} == {"normal_end"}
    assert {res for (t, res) in results if t == "single"} == {
        "normal_end",
        "cancel",
        "reject",
        "not_answer",
        "call_busy",
        "interrupt",
        "offline",
    }
    users: set[str] = set()
    no_accept = Counter()
    for r in records:
        assert UUID.match(r["callId"])
        assert r["sdkAppId"] == api.settings.sdkappid and isinstance(r["sdkAppId"], int)
        assert r["mediaType"] in {"video", "audio"}
        assert isinstance(r["roomId"], str) and isinstance(r["caller"], str)
        assert all(isinstance(x, int) for x in (r["startCallTs"], r["endTs"], r["totalUserNumber"]))
        assert r["endTs"] >= r["startCallTs"]
        callees = r["callees"]
        assert isinstance(callees, list) and all(isinstance(c, str) for c in callees)
        users.update(callees + [r["caller"]])
        if r["callType"] == "group":
            assert 2 <= len(callees) <= 6 and r["totalUserNumber"] == 1 + len(callees)
        elif r["callResult"] == "offline":  # the sample's shape
            assert callees[-1] == r["caller"] and len(callees) == 2
            assert r["totalUserNumber"] == 0 and r["acceptTs"] == r["startCallTs"]
            assert r["endTs"] - r["startCallTs"] >= 3600
        else:
            assert len(callees) == 1 and r["caller"] not in callees
        if r["callResult"] == "not_answer":
            no_accept[r.get("acceptTs", "absent")] += 1
        elif r["callResult"] in {"normal_end", "interrupt"}:
            assert r["startCallTs"] < r["acceptTs"] <= r["endTs"]
        else:
            assert r["acceptTs"] == r["startCallTs"]
    assert set(no_accept) == {"absent", 0}
    assert any(u.startswith("0") and u.isdigit() for u in users)  # text ids with leading zeros
    assert any(not u.isdigit() for u in users)
    assert len({r["callId"] for r in records}) == len(records)


def test_filters_partition_the_total(api):
    body = {"startTimestamp": NOW - 2 * DAY, "endTimestamp": NOW - DAY}
    total = api.call(body)["data"]["totalNum"]
    parts = 0
    for call_type, result in {(t, r) for t, r, _ in trtc.SHARES} | {("single", "normal_end")}:
        a = api.call({**body, "callType": call_type, "callResult": result, "numberPerPage": 100})
        parts += a["data"]["totalNum"]
        recs = a["data"]["callRecordList"]
        assert recs and all((r["callType"], r["callResult"]) == (call_type, result) for r in recs)
    assert parts == total
    group = api.call({**body, "callType": "group"})["data"]["totalNum"]
    single = api.call({**body, "callType": "single"})["data"]["totalNum"]
    assert group + single == total
    offline, _ = api.walk({**body, "callResult": "offline", "numberPerPage": 7})
    assert len(offline) == api.call({**body, "callResult": "offline"})["data"]["totalNum"]
    assert {r["callResult"] for r in offline} == {"offline"}


def test_group_package_missing_answers_50001():
    api = Api(trtc.Settings(group_package=False))
    assert api.call({"startTimestamp": NOW - DAY, "callType": "group"})["errorCode"] == 50001
    assert api.call({"startTimestamp": NOW - DAY, "callType": "single"})["errorCode"] == 0


# ---------------------------------------------------------------------------------------------
# rate limit


def test_rate_limit_rejects_and_counts():
    api = Api(trtc.Settings(max_rps=5))
    codes = [api.call({"startTimestamp": NOW - 600})["errorCode"] for _ in range(7)]
    assert codes[:5] == [0] * 5 and codes[5:] == [70010, 70010]
    assert trtc.rate_limited_count(api.state) == 2
    assert api.state.requests["trtc /v1/records/get_records_by_filter"] == 7


def test_rate_limiter_slides_on_monotonic_time():
    t = [100.0]
    lim = trtc.RateLimiter(3, monotonic=lambda: t[0])
    assert [lim.allow() for _ in range(4)] == [True, True, True, False]
    t[0] = 100.5
    assert not lim.allow()
    t[0] = 101.01  # the first three left the window
    assert [lim.allow() for _ in range(4)] == [True, True, True, False]


def test_default_limit_is_200_and_no_rejection_below_it(api):
    assert trtc.Settings().max_rps == 200
    assert trtc.rate_limited_count(api.state) == 0


# ---------------------------------------------------------------------------------------------
# faults


def test_envelope_fault():
    api = Api()
    api.state.faults.arm(trtc.ENDPOINT, Fault("envelope"))
    a = api.call({"startTimestamp": NOW - 600})
    assert a["errorCode"] == 50001 and "data" not in a
    assert api.call({"startTimestamp": NOW - 600})["errorCode"] == 0  # one use only


def test_drift_fault():
    api = Api()
    api.state.faults.arm(trtc.ENDPOINT, Fault("drift"))
    recs = api.call({"startTimestamp": NOW - 600})["data"]["callRecordList"]
    assert recs and all(isinstance(r["startCallTs"], str) and isinstance(r["callees"], str) for r in recs)
    clean = api.call({"startTimestamp": NOW - 600})["data"]["callRecordList"]
    assert [r["startCallTs"] for r in recs] == [str(r["startCallTs"]) for r in clean]
    assert [r["callees"] for r in recs] == [",".join(r["callees"]) for r in clean]


@pytest.mark.parametrize("mode", ["500", "503", "429", "truncated"])
def test_generic_faults_reach_the_endpoint(mode):
    api = Api()
    api.state.faults.arm(trtc.ENDPOINT, Fault(mode))
    r = api.post({"startTimestamp": NOW - 600})
    if mode == "truncated":
        assert r.status_code == 200
        with pytest.raises(ValueError):
            json.loads(r.content)
    else:
        assert r.status_code == int(mode)
    assert api.call({"startTimestamp": NOW - 600})["errorCode"] == 0


def test_env():
    s = trtc.Settings()
    assert trtc.env(s, "http://127.0.0.1:9/trtc") == {
        "TRTC_BASE_URL": "http://127.0.0.1:9/trtc",
        "TRTC_SDKAPPID": str(s.sdkappid),
        "TRTC_SECRET_KEY": s.secret_key,
        "TRTC_ADMIN_IDENTIFIER": "administrator",
        "TRTC_TIMEZONE": "Asia/Shanghai",
    }


# ---------------------------------------------------------------------------------------------
# issue 11: a vendor that forgets, serves what PostgreSQL cannot take, or deletes calls


def test_empty_fault_answers_70011_for_a_window_full_of_calls():
    api = Api()
    body = {"startTimestamp": NOW - 3600, "numberPerPage": 10}
    assert api.call(body)["data"]["totalNum"] > 0
    api.state.faults.arm(trtc.ENDPOINT, Fault("empty", times=-1))
    for page in (1, 2):
        a = api.call({**body, "page": page})
        assert a["errorCode"] == 70011 and "data" not in a
    # a malformed query is still refused as such, not answered "no records"
    assert api.call({"numberPerPage": 10})["errorCode"] == 70402


@pytest.mark.parametrize(
    ("variant", "raw", "field"),
    [
        ("nul", "\\u0000", "roomId"),
        ("surrogate", "\\ud800", "roomId"),
        ("bignum", "1e999999", "totalUserNumber"),
    ],
)
def test_poison_puts_one_bad_value_into_one_record_of_a_valid_body(variant, raw, field):
    api = Api()
    body = {"startTimestamp": NOW - 3600, "numberPerPage": 10}
    clean = api.call(body)["data"]["callRecordList"]
    api.state.faults.arm(trtc.ENDPOINT, Fault("poison", variant=variant))
    r = api.post(body)
    text = r.content.decode()
    assert text.count(raw) == 1  # the raw JSON text, not an escaped backslash
    payload = json.loads(text)  # still valid JSON, as a real vendor's body would be
    recs = payload["data"]["callRecordList"]
    assert [x["callId"] for x in recs] == [x["callId"] for x in clean]
    bad = [i for i, (x, y) in enumerate(zip(recs, clean, strict=True)) if x != y]
    assert len(bad) == 1
    changed = {k for k in recs[bad[0]] if recs[bad[0]][k] != clean[bad[0]][k]}
    assert changed == {field}
    if variant == "bignum":
        assert recs[bad[0]][field] == float("inf")
    else:
        assert {"nul": "\x00", "surrogate": "\ud800"}[variant] in recs[bad[0]][field]
    assert api.call(body)["data"]["callRecordList"] == clean  # one use only


def test_deleted_calls_are_gone_and_pages_shift_like_the_vendors():
    api = Api()
    body = {"startTimestamp": NOW - 2 * 3600, "endTimestamp": NOW - 1, "numberPerPage": 10}
    before, answers = api.walk(body)
    total = answers[0]["data"]["totalNum"]
    assert len(before) == total > 30
    # one call on page 1, one on page 3's boundary, one outside the window
    gone = [before[3]["callId"], before[20]["callId"]]
    outside = api.call({"startTimestamp": NOW - 5 * 3600, "endTimestamp": NOW - 4 * 3600})
    api.state.deleted.update(f"trtc:{c}" for c in [*gone, outside["data"]["callRecordList"][0]["callId"]])
    after, answers = api.walk(body)
    assert answers[0]["data"]["totalNum"] == total - 2
    assert [r["callId"] for r in after] == [r["callId"] for r in before if r["callId"] not in gone]
    # page 2 starts with the record that followed page 1's last one (one more than before)
    p2 = api.call({**body, "page": 2})["data"]["callRecordList"]
    assert p2[0]["callId"] == before[11]["callId"]
    # a filter sees the deletion too, and the vendor's deletions can be undone
    result = before[3]["callResult"]
    one = api.call({**body, "callResult": result})["data"]["totalNum"]
    api.state.deleted.clear()
    assert api.call({**body, "callResult": result})["data"]["totalNum"] == one + 1
    assert api.walk(body)[0] == before


def test_deleting_every_call_of_a_window_answers_70011():
    api = Api()
    body = {"startTimestamp": NOW - 600, "endTimestamp": NOW - 1}
    recs = api.call(body)["data"]["callRecordList"]
    api.state.deleted.update(f"trtc:{r['callId']}" for r in recs)
    assert api.call(body)["errorCode"] == 70011


def test_call_id_matches_the_record():
    s = trtc.Settings()
    assert all(trtc.call_id(s.seed, g) == trtc.make_record(s, g)["callId"] for g in range(0, 5000, 97))
