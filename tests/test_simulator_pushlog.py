"""The push-log simulator (Alibaba Cloud VMS CloudListCurlLog, seed 001), in-process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from pipelines.defs.sources.pushlog.signing import AcsV3Auth
from simulator import pushlog
from simulator.common import Fault, SimState

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 20, 12, 0, 0, tzinfo=SHANGHAI).timestamp()
DAY = {"StartTime": "2026-03-19 00:00:00", "EndTime": "2026-03-19 23:59:59"}
SAMPLE_KEYS = [
    "UniqueId",
    "EndTime",
    "ContentType",
    "Position",
    "Timeout",
    "Headers",
    "CreateTime",
    "TypeStr",
    "StartTime",
    "Params",
    "RequestTime",
    "Method",
    "StatusCode",
    "Url",
    "Delay",
    "EnterpriseId",
    "Result",
    "Type",
    "ResultText",
    "Level",
    "Retry",
    "Id",
    "CurrentMonth",
]


class Sim:
    def __init__(self, settings: pushlog.Settings | None = None) -> None:
        self.settings = settings or pushlog.Settings()
        self.state = SimState()
        self.state.clock.set(now=NOW)
        app = Starlette(routes=[Mount("/pushlog", app=pushlog.build_app(self.settings, self.state))])
        self.client = TestClient(app, base_url="http://testserver")
        self.auth = self.signer()

    def signer(self, **kw: object) -> AcsV3Auth:
        kw.setdefault("clock", self.state.clock.now)
        key_id = kw.pop("access_key_id", self.settings.access_key_id)
        secret = kw.pop("access_key_secret", self.settings.access_key_secret)
        return AcsV3Auth(key_id, secret, **kw)

    def call(self, auth: httpx.Auth | None = None, **params: str) -> httpx.Response:
        query = {"EnterpriseId": str(self.settings.enterprise_id), **params}
        return self.client.post("/pushlog/", params=query, auth=auth or self.auth)

    def ok(self, **params: str) -> list[dict]:
        response = self.call(**params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["Code"] == "OK", body
        return body["Data"]["List"]

    def pull(self, limit: int = 500, **params: str) -> Iterator[list[dict]]:
        start = 0
        while True:
            page = self.ok(Start=str(start), Limit=str(limit), **params)
            yield page
            if len(page) < limit:
                return
            start += limit


@pytest.fixture
def sim() -> Sim:
    return Sim()


def _ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI).timestamp() * 1000)


def _decode(value: str) -> object:
    """What the pipeline must do: decode until an object, keep text that never is one."""
    for _ in range(3):
        try:
            value = json.loads(value)
        except ValueError:
            try:
                value = json.loads(f'"{value}"')
            except ValueError:
                return value
        if not isinstance(value, str):
            return value
    return value


def test_success_envelope_and_sample_shape(sim: Sim) -> None:
    response = sim.call(Limit="5", **DAY)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["AccessDeniedDetail", "RequestId", "Message", "Data", "Code"]
    assert body["AccessDeniedDetail"] == "无" and body["Message"] == "OK" and body["Code"] == "OK"
    assert "total" not in json.dumps(body["Data"]).lower()
    assert len(body["RequestId"]) == 36 and body["RequestId"].count("-") == 4
    records = body["Data"]["List"]
    assert len(records) == 5
    for rec in records:
        assert list(rec) == SAMPLE_KEYS
        for key in ("CreateTime", "StartTime", "EndTime", "RequestTime", "Id", "Position", "Timeout"):
            assert isinstance(rec[key], str) and rec[key].isdigit(), key
        for key in ("StatusCode", "EnterpriseId", "Result"):
            assert isinstance(rec[key], str) and rec[key].isdigit(), key
        for key in ("Type", "ContentType", "Delay", "Level", "Retry"):
            assert isinstance(rec[key], int), key
        assert rec["EnterpriseId"] == "7122600"
        assert int(rec["StartTime"]) <= int(rec["CreateTime"]) < int(rec["RequestTime"]) < int(rec["EndTime"])


def test_quirks_of_the_sample_are_reproduced(sim: Sim) -> None:
    records = [r for page in sim.pull(**DAY) for r in page]
    assert len(records) == sim.settings.volume
    by = lambda pred: [r for r in records if pred(r)]  # noqa: E731

    twice = by(lambda r: r["Params"].startswith('{\\"'))
    once = by(lambda r: r["Params"].startswith('{"'))
    assert len(twice) > 0.8 * len(records) and 0 < len(once) < 0.1 * len(records)
    assert len(twice) + len(once) == len(records)
    for rec in records:
        params = _decode(rec["Params"])
        assert isinstance(params, dict) and params["enterpriseId"] == "7122600"
        assert isinstance(_decode(rec["Headers"]), dict)
    status = by(lambda r: r["Type"] == 9 and r["Params"].startswith('{\\"bindTel\\":'))
    assert status and set(_decode(status[0]["Params"])) >= {"bindTel", "stateAction", "cno", "state", "event"}
    assert any(p["bindTel"].startswith("0") for p in map(lambda r: _decode(r["Params"]), status))

    plain = by(lambda r: not isinstance(_decode(r["ResultText"]), dict))
    assert {"success", "ok", "SUCCESS", "OK"} & {r["ResultText"] for r in plain}
    assert any(isinstance(_decode(r["ResultText"]), dict) for r in records)
    assert 0 < len(by(lambda r: r["Headers"] == "{}")) < 0.3 * len(records)

    assert len(by(lambda r: r["UniqueId"] == '""')) > len(records) / 2
    assert by(lambda r: r["UniqueId"].startswith("sip-"))
    assert len(by(lambda r: r["CurrentMonth"] == '""')) > len(records) / 2
    assert set(r["CurrentMonth"] for r in records) == {'""', "202603"}

    odd = by(lambda r: r["TypeStr"] != pushlog.TYPE_NAMES[r["Type"]])
    assert 0 < len(odd) < 0.05 * len(records)
    assert by(lambda r: r["TypeStr"] == pushlog.TYPE_NAMES[r["Type"]] == "座席状态推送")
    assert {r["Method"] for r in records} == {"GET", "POST"}
    assert len(by(lambda r: r["StatusCode"] == "200")) > 0.9 * len(records)
    failed = by(lambda r: r["Result"] == "0")
    assert failed and all(r["StatusCode"] != "200" and r["Retry"] >= 1 for r in failed)
    assert {r["Type"] for r in records} >= {1, 2, 7, 8, 9, 12}


def test_paging_by_offset_is_complete_ordered_and_has_no_total(sim: Sim) -> None:
    pages = list(sim.pull(limit=500, **DAY))
    assert [len(p) for p in pages] == [500, 500, 500, 500, 0]
    ids = [int(r["Id"]) for p in pages for r in p]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) == 2000
    small = [int(r["Id"]) for p in sim.pull(limit=37, **DAY) for r in p]
    assert small == ids
    lo, hi = _ms(DAY["StartTime"]), _ms(DAY["EndTime"]) + 999
    assert all(lo <= int(r["CreateTime"]) <= hi for p in pages for r in p)
    # Id = local day number * 10M + index; CreateTime = day start + i * 86400000 // volume
    first = pages[0][0]
    assert int(first["Id"]) % pushlog.ID_STRIDE == 0 and int(first["CreateTime"]) == lo
    assert int(pages[0][1]["CreateTime"]) == lo + 86_400_000 // 2000

    # a window boundary inside a day, inclusive of EndTime's whole second
    hour = sim.ok(StartTime="2026-03-19 10:00:00", EndTime="2026-03-19 10:59:59", Limit="500")
    assert len(hour) == 2000 // 24 + 1 or len(hour) == 2000 // 24
    assert all(_ms("2026-03-19 10:00:00") <= int(r["CreateTime"]) < _ms("2026-03-19 11:00:00") for r in hour)
    assert sim.ok(Start="5000", Limit="10", **DAY) == []
    assert len(sim.ok(**DAY)) == 10  # default Limit


def test_whole_month_window_spans_days(sim: Sim) -> None:
    month = {"StartTime": "2026-03-01 00:00:00", "EndTime": "2026-03-31 23:59:59"}
    # records exist up to now (2026-03-20 12:00): 19.5 days of 2000
    last = sim.ok(Start=str(19 * 2000 + 990), Limit="500", **month)
    assert len(last) == 11  # 19 whole days, then i = 0..1000 of the 20th
    assert int(last[-1]["CreateTime"]) <= NOW * 1000
    crossing = sim.ok(Start="1998", Limit="4", **month)
    days = [int(r["Id"]) // pushlog.ID_STRIDE for r in crossing]
    assert days[0] + 1 == days[2] and days[0] == days[1] and days[2] == days[3]


def test_deterministic_from_seed_and_volume() -> None:
    a, b = Sim(), Sim()
    pa, pb = a.ok(Limit="50", **DAY), b.ok(Limit="50", **DAY)
    assert pa == pb
    other = Sim(pushlog.Settings(seed=8)).ok(Limit="50", **DAY)
    assert [r["Id"] for r in other] == [r["Id"] for r in pa]
    assert [r["Params"] for r in other] != [r["Params"] for r in pa]
    bigger = Sim(pushlog.Settings(volume=50_000))
    assert len([r for p in bigger.pull(**{**DAY, "EndTime": "2026-03-19 00:09:59"}) for r in p]) == 348


def test_clock_moving_forward_makes_new_deliveries_appear(sim: Sim) -> None:
    today = {"StartTime": "2026-03-20 00:00:00", "EndTime": "2026-03-20 23:59:59"}
    before = [r for p in sim.pull(**today) for r in p]
    assert len(before) == 1001  # i * 43200 ms <= 12:00:00 for i = 0..1000
    assert all(int(r["CreateTime"]) <= NOW * 1000 for r in before)
    sim.state.clock.set(now=NOW + 3600)
    after = [r for p in sim.pull(**today) for r in p]
    assert len(after) == 1001 + 83
    assert after[: len(before)] == before


def test_late_deliveries_appear_after_their_create_time() -> None:
    sim = Sim(pushlog.Settings(late_fraction=0.3))
    window = {"StartTime": "2026-03-20 10:00:00", "EndTime": "2026-03-20 23:59:59"}
    sim.state.clock.set(now=NOW)
    before = [r for p in sim.pull(limit=7, **window) for r in p]
    ids_before = {r["Id"] for r in before}
    sim.state.clock.set(now=NOW + 600)
    later = [r for p in sim.pull(limit=500, **window) for r in p]
    new = [r for r in later if r["Id"] not in ids_before]
    max_before = max(int(i) for i in ids_before)
    late = [r for r in new if int(r["Id"]) < max_before]
    assert late, "some deliveries created before the first pull only show up later"
    assert all(int(r["CreateTime"]) > NOW * 1000 - 600_000 for r in late)
    # after max_late_ms every delivery created up to the first pull's now is visible
    assert {r["Id"] for r in later if int(r["CreateTime"]) <= NOW * 1000} >= ids_before
    assert len([r for r in later if int(r["CreateTime"]) <= NOW * 1000]) == 2000 * 2 // 24 + 1
    ids = [int(r["Id"]) for r in later]
    assert ids == sorted(ids)


def test_filters_are_applied_and_page(sim: Sim) -> None:
    nines = [r for p in sim.pull(limit=100, Type="9", **DAY) for r in p]
    assert nines and all(r["Type"] == 9 for r in nines)
    failed = sim.ok(Result="0", Limit="500", **DAY)
    assert failed and all(r["Result"] == "0" for r in failed)
    url = "http://callback.example.com.cn:8080/tinet/notify"
    by_url = sim.ok(Url=url, Limit="500", **DAY)
    assert by_url and all(r["Url"] == url for r in by_url)
    retried = sim.ok(Retry="1", Limit="500", **DAY)
    assert retried and all(r["Retry"] == 1 for r in retried)
    everything = [r for p in sim.pull(**DAY) for r in p]
    assert [r["Id"] for r in nines] == [r["Id"] for r in everything if r["Type"] == 9]
    assert sim.ok(Url="https://不存在.example.com/a b*~", **DAY) == []
    assert len(sim.ok(Retry="-2", Limit="500", **DAY)) == 500


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["RequestId", "HostId", "Code", "Message", "Recommend"]
    assert body["Code"] == code, body
    assert body["HostId"] == "dyvmsapi.aliyuncs.com" and code in body["Recommend"]
    return body


def test_signature_verified(sim: Sim) -> None:
    assert sim.call(**DAY).status_code == 200
    _error(sim.call(sim.signer(access_key_secret="wrong"), **DAY), 400, "SignatureDoesNotMatch")
    _error(sim.call(sim.signer(access_key_id="nobody"), **DAY), 404, "InvalidAccessKeyId.NotFound")
    response = sim.client.post("/pushlog/", params={"EnterpriseId": "7122600", **DAY})
    _error(response, 400, "IncompleteSignature")

    # the query is signed: change it after signing
    request = sim.client.build_request("POST", "/pushlog/", params={"EnterpriseId": "7122600", **DAY})
    signed = next(sim.auth.auth_flow(request))
    signed.url = signed.url.copy_set_param("Limit", "500")
    _error(sim.client.send(signed), 400, "SignatureDoesNotMatch")

    # the body is covered by x-acs-content-sha256
    request = sim.client.build_request("POST", "/pushlog/", params={"EnterpriseId": "7122600", **DAY})
    signed = next(sim.auth.auth_flow(request))
    headers = {k: v for k, v in signed.headers.items() if k != "content-length"}
    tampered = httpx.Request("POST", signed.url, headers=headers, content=b"Limit=500")
    _error(sim.client.send(tampered), 400, "SignatureDoesNotMatch")


def test_date_must_be_within_15_minutes(sim: Sim) -> None:
    for skew, ok in ((-14 * 60, True), (14 * 60, True), (-16 * 60, False), (16 * 60, False)):
        auth = sim.signer(clock=lambda s=skew: NOW + s)
        response = sim.call(auth, **DAY)
        if ok:
            assert response.status_code == 200
        else:
            _error(response, 400, "InvalidTimeStamp.Expired")


def test_nonce_cannot_be_reused_and_memory_is_bounded() -> None:
    sim = Sim(pushlog.Settings(nonce_memory=2))
    fixed = sim.signer(nonce=lambda: "nonce-a")
    assert sim.call(fixed, **DAY).status_code == 200
    _error(sim.call(fixed, **DAY), 400, "SignatureNonceUsed")
    for n in ("nonce-b", "nonce-c"):
        assert sim.call(sim.signer(nonce=lambda n=n: n), **DAY).status_code == 200
    assert sim.call(fixed, **DAY).status_code == 200  # forgotten: the set is bounded


def test_parameters_validated_like_alibaba(sim: Sim) -> None:
    response = sim.client.post("/pushlog/", params=DAY, auth=sim.auth)
    _error(response, 400, "MissingEnterpriseId")
    other = {**DAY, "EnterpriseId": "7000002"}
    _error(sim.client.post("/pushlog/", params=other, auth=sim.auth), 403, "Forbidden.NoPermission")
    _error(sim.call(EndTime="2026-03-19 23:59:59"), 400, "MissingStartTime")
    _error(sim.call(StartTime="2026-03-19 00:00:00"), 400, "MissingEndTime")
    body = _error(
        sim.call(StartTime="2026-02-28 00:00:00", EndTime="2026-03-01 00:00:00"), 400, "InvalidParameter"
    )
    assert "month" in body["Message"]
    _error(sim.call(StartTime="2026-03-19", EndTime="2026-03-19 23:59:59"), 400, "InvalidParameter")
    _error(sim.call(StartTime="2026-03-19 10:00:00", EndTime="2026-03-19 09:00:00"), 400, "InvalidParameter")
    for limit in ("0", "501", "abc", "-3"):
        body = _error(sim.call(Limit=limit, **DAY), 400, "InvalidParameter")
        assert "Limit" in body["Message"]
    assert len(sim.ok(Limit="500", **DAY)) == 500
    _error(sim.call(Start="-1", **DAY), 400, "InvalidParameter")
    _error(sim.call(Type="30", **DAY), 400, "InvalidParameter")
    _error(sim.call(Result="2", **DAY), 400, "InvalidParameter")


def test_action_and_version_checked(sim: Sim) -> None:
    _error(sim.call(sim.signer(action="ListCallDetailRecords"), **DAY), 404, "InvalidAction.NotFound")
    _error(sim.call(sim.signer(version="2099-01-01"), **DAY), 400, "InvalidVersion")


def test_parameters_in_a_form_body_are_accepted(sim: Sim) -> None:
    form = {"EnterpriseId": "7122600", "Limit": "3", **DAY}
    response = sim.client.post("/pushlog/", data=form, auth=sim.auth)
    assert response.status_code == 200, response.text
    assert len(response.json()["Data"]["List"]) == 3


def test_envelope_and_drift_faults(sim: Sim) -> None:
    sim.state.faults.arm("/", Fault("envelope"))
    response = sim.call(**DAY)
    assert response.status_code == 200
    body = response.json()
    assert body["Code"] == "isv.BUSINESS_LIMIT_CONTROL" and "Data" not in body
    assert sim.call(**DAY).json()["Code"] == "OK"

    sim.state.faults.arm("/", Fault("drift"))
    drifted = sim.ok(Limit="20", **DAY)
    assert all(isinstance(r["Type"], str) and "Position" not in r for r in drifted)
    assert all(isinstance(r["Type"], int) and "Position" in r for r in sim.ok(Limit="20", **DAY))


def test_generic_faults_pass_through_serve(sim: Sim) -> None:
    sim.state.faults.arm("/", Fault("503", times=1))
    assert sim.call(**DAY).status_code == 503
    sim.state.faults.arm("/", Fault("429", retry_after=2))
    response = sim.call(**DAY)
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    sim.state.faults.arm("/", Fault("truncated"))
    with pytest.raises(ValueError):
        json.loads(sim.call(Limit="50", **DAY).content)
    assert sim.state.requests["pushlog /"] == 3


def test_env_points_a_client_at_the_simulator() -> None:
    settings = pushlog.Settings()
    env = pushlog.env(settings, "http://127.0.0.1:8765/pushlog")
    assert env == {
        "PUSHLOG_BASE_URL": "http://127.0.0.1:8765/pushlog",
        "PUSHLOG_ACCESS_KEY_ID": settings.access_key_id,
        "PUSHLOG_ACCESS_KEY_SECRET": settings.access_key_secret,
        "PUSHLOG_ENTERPRISE_ID": "7122600",
        "PUSHLOG_TIMEZONE": "Asia/Shanghai",
    }


def test_empty_fault_answers_ok_without_records(sim: Sim) -> None:
    sim.state.faults.arm("/", Fault("empty", times=1))
    body = sim.call(Limit="50", **DAY).json()
    assert body["Code"] == "OK" and body["Message"] == "OK" and body["Data"] == {"List": []}
    assert len(sim.ok(Limit="50", **DAY)) == 50  # one use only


@pytest.mark.parametrize(
    ("variant", "field", "marker"),
    [
        ("nul", "ResultText", "\\u0000"),
        ("surrogate", "ResultText", "\\ud800"),
        ("bignum", "Delay", "1e999999"),
    ],
)
def test_poison_fault_puts_one_bad_value_into_one_record(
    sim: Sim, variant: str, field: str, marker: str
) -> None:
    clean = sim.ok(Limit="20", **DAY)
    sim.state.faults.arm("/", Fault("poison", variant=variant))
    response = sim.call(Limit="20", **DAY)
    text = response.text
    assert text.count(marker) == 1, "exactly one record carries the poison, as JSON text"
    records = response.json()["Data"]["List"]  # still valid JSON
    assert [r["Id"] for r in records] == [r["Id"] for r in clean]
    changed = [i for i, (a, b) in enumerate(zip(records, clean, strict=True)) if a != b]
    assert changed == [0]
    bad, good = records[0], clean[0]
    assert {k for k in bad if bad[k] != good[k]} == {field}
    if variant == "nul":
        assert bad[field] == "\x00" + good[field]
    elif variant == "surrogate":
        assert bad[field] == "\ud800" + good[field]
    else:
        assert bad[field] == float("inf")  # beyond a double, far beyond PostgreSQL's numeric


def test_deleted_deliveries_are_gone_and_later_offsets_shift(sim: Sim) -> None:
    before = [r for p in sim.pull(limit=500, **DAY) for r in p]
    assert len(before) == 2000
    gone = [before[3]["Id"], before[700]["Id"], before[1999]["Id"]]
    sim.state.deleted.update(f"pushlog:{i}" for i in gone)
    sim.state.deleted.add("crm:123")  # another vendor's deletion changes nothing here
    after = [r for p in sim.pull(limit=500, **DAY) for r in p]
    assert [r["Id"] for r in after] == [r["Id"] for r in before if r["Id"] not in gone]
    # offsets are logical: page 2 starts with the record that followed, every page size agrees
    assert sim.ok(Start="500", Limit="1", **DAY)[0]["Id"] == before[501]["Id"]  # one gone before it
    assert [r["Id"] for p in sim.pull(limit=37, **DAY) for r in p] == [r["Id"] for r in after]
    assert sim.ok(Start="1997", Limit="10", **DAY) == []
    # the scanning paths (filters, late deliveries) skip them too
    filtered = [r["Id"] for p in sim.pull(limit=100, Result="1", **DAY) for r in p]
    assert set(filtered).isdisjoint(gone) and filtered
    late = Sim(pushlog.Settings(late_fraction=0.3))
    late.state.clock.set(now=_ms("2026-03-19 00:05:00") / 1000)
    window = {"StartTime": "2026-03-19 00:00:00", "EndTime": "2026-03-19 00:05:00"}
    seen = [r["Id"] for p in late.pull(**window) for r in p]
    late.state.deleted.add(f"pushlog:{seen[1]}")
    assert [r["Id"] for p in late.pull(**window) for r in p] == seen[:1] + seen[2:]
    sim.state.deleted.clear()
    assert [r["Id"] for p in sim.pull(limit=500, **DAY) for r in p] == [r["Id"] for r in before]
