"""The TRTC client: UserSig on every send, 70001/70009, the 7-day request rule, the
retention plan and every paging stop condition.

Against the simulator over real HTTP; paging variants the simulator does not speak (no
``page`` 0, no ``totalNum``, a server ignoring ``page``) against a small in-test vendor
(an httpx transport), the only way to make those answers happen.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from pipelines.defs.sources.trtc import plan
from pipelines.defs.sources.trtc.client import TrtcResource, UserSigExpired
from pipelines.defs.sources.trtc.paging import Pull
from pipelines.defs.sources.trtc.usersig import decode_usersig
from pipelines.lib.http import VendorAuthError
from simulator import trtc as simtrtc
from simulator.common import Fault
from simulator.server import running

TZ = ZoneInfo("Asia/Shanghai")
WEEK = datetime(2026, 11, 9, tzinfo=TZ)  # a Monday
END = WEEK + timedelta(days=7)
DAY_S = 86_400
PATH = "/v1/records/get_records_by_filter"
# A day the vendor still holds by the wall clock (for tests that judge UserSigs by it).
RECENT = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)


def resource(env: dict[str, str], **over: object) -> TrtcResource:
    settings: dict[str, object] = {
        "base_url": env["TRTC_BASE_URL"],
        "sdkappid": env["TRTC_SDKAPPID"],
        "secret_key": env["TRTC_SECRET_KEY"],
        "admin_identifier": env["TRTC_ADMIN_IDENTIFIER"],
        "backoff_base_s": 0.01,
        "max_retries": 2,
        "timeout_s": 10,
        **over,
    }
    return TrtcResource(**settings)


class Recording(httpx.AsyncBaseTransport):
    """The real network, with every request sent kept for inspection."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def queries(self) -> list[dict[str, str]]:
        return [{k: v[0] for k, v in parse_qs(urlsplit(str(r.url)).query).items()} for r in self.sent]

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.sent]


def walk(res: TrtcResource, start: datetime, end: datetime, now: float, transport=None, clock=time.time):  # noqa: ANN001, ANN201
    """Every page of [start, end) as the asset would fetch it: (pull, records, client)."""

    async def go() -> tuple[Pull, int, object]:
        client = res.client(transport=transport, clock=clock)
        pull = Pull(plan.plan_pull(start, end, now))
        records = 0
        async with client.http:
            async for page in client.pages(pull):
                records += page.records
        return pull, records, client

    return asyncio.run(go())


@pytest.fixture
def frozen(simulator):  # noqa: ANN001, ANN201
    """The vendor's data clock half a day before the end of WEEK; signatures by the wall clock."""
    now = (WEEK + timedelta(days=6, hours=12)).timestamp()
    simulator.state.clock.set(now=now, auth_wall=True)
    return now


# -- UserSig ------------------------------------------------------------------------------


def test_every_send_carries_the_usersig_and_a_fresh_random_retries_included(simulator, frozen, sim) -> None:  # noqa: ANN001
    simulator.state.faults.arm(PATH, Fault("503", times=1))  # the first request is retried
    rec = Recording()
    env = sim.env()
    pull, records, client = walk(resource(env), WEEK, WEEK + timedelta(days=2), frozen, transport=rec)
    queries = rec.queries()
    assert client.http.stats.retries == 1 and len(queries) == client.http.stats.requests
    randoms = [q["random"] for q in queries]
    assert len(set(randoms)) == len(randoms)  # fresh per send, the retried one too
    assert all(0 <= int(r) <= 0xFFFFFFFF for r in randoms)
    for q in queries:
        assert q["sdkappid"] == env["TRTC_SDKAPPID"]
        assert q["identifier"] == env["TRTC_ADMIN_IDENTIFIER"]
        assert q["contenttype"] == "json"
        assert decode_usersig(q["usersig"])["TLS.identifier"] == env["TRTC_ADMIN_IDENTIFIER"]
    assert records == pull.api_total > 0


def test_expired_usersig_is_renewed_once_and_the_request_retried(sim) -> None:  # noqa: ANN001
    # The first UserSig is made two days in the past (a clock that jumped): the vendor answers
    # 70001; the client makes a new one, which the vendor accepts.
    times = iter([time.time() - 2 * DAY_S])
    rec = Recording()
    res = resource(sim.env(), usersig_expire_s=3600)
    now = time.time()
    pull, records, client = walk(
        res, RECENT, RECENT + timedelta(days=1), now, transport=rec, clock=lambda: next(times, time.time())
    )
    assert records == pull.api_total > 0
    sigs = [q["usersig"] for q in rec.queries()]
    assert client.auth.renewals == 1
    assert sigs[0] != sigs[1] and len(set(sigs[1:])) == 1  # one renewal, then the new one throughout


def test_usersig_still_expired_after_renewal_is_a_clear_error(simulator, sim) -> None:  # noqa: ANN001
    simulator.state.clock.set(offset=3 * DAY_S)  # the vendor's clock 3 days ahead of ours
    rec = Recording()
    with pytest.raises(UserSigExpired) as err:
        walk(resource(sim.env()), RECENT, RECENT + timedelta(days=1), time.time(), transport=rec)
    assert len(rec.sent) == 2  # the request, then once more with a renewed UserSig
    assert "clock" in str(err.value) and "70001" in str(err.value)


def test_wrong_key_names_the_settings_and_leaks_nothing(sim) -> None:  # noqa: ANN001
    rec = Recording()
    res = resource(sim.env(), secret_key="not-the-key")
    with pytest.raises(VendorAuthError) as err:
        walk(res, RECENT, RECENT + timedelta(days=1), time.time(), transport=rec)
    text = str(err.value)
    assert "70009" in text and "TRTC_SECRET_KEY" in text and "TRTC_SDKAPPID" in text
    assert "not-the-key" not in text and rec.queries()[0]["usersig"] not in text and "usersig=" not in text
    assert len(rec.sent) == 1  # a wrong key is not retried


def test_missing_settings_name_their_variable() -> None:
    env = {
        "TRTC_BASE_URL": "",
        "TRTC_SDKAPPID": "1",
        "TRTC_SECRET_KEY": "k",
        "TRTC_ADMIN_IDENTIFIER": "a",
    }
    with pytest.raises(ValueError, match="TRTC_BASE_URL"):
        resource(env).client()
    with pytest.raises(ValueError, match="TRTC_SDKAPPID"):
        resource({**env, "TRTC_BASE_URL": "http://x", "TRTC_SDKAPPID": "abc"}).client()


# -- windows ------------------------------------------------------------------------------


def test_no_request_ever_spans_more_than_7_days(frozen, sim) -> None:  # noqa: ANN001
    rec = Recording()
    walk(resource(sim.env()), WEEK, WEEK + timedelta(days=7), frozen, transport=rec)
    bodies = rec.bodies()
    # A week is one range, [start, end - 1 s], its pages 1..N.
    assert {(b["startTimestamp"], b["endTimestamp"]) for b in bodies} == {
        (int(WEEK.timestamp()), int((WEEK + timedelta(days=7)).timestamp()) - 1)
    }
    assert sorted(b["page"] for b in bodies) == list(range(1, len(bodies) + 1))
    with pytest.raises(ValueError, match="7-day"):
        plan.SubWindow(1_000_000, 1_000_000 + 7 * DAY_S + 1)
    # A week that leaves daylight saving time is 7 days and an hour: two ranges, neither longer.
    berlin = ZoneInfo("Europe/Berlin")
    start, end = datetime(2026, 10, 19, tzinfo=berlin), datetime(2026, 10, 26, tzinfo=berlin)
    p = plan.plan_pull(start, end, (start + timedelta(days=6)).timestamp())
    assert p.edge is None and len(p.bulk) == 2
    assert all(w.last_s - w.first_s <= 7 * DAY_S for w in p.bulk)
    assert p.bulk[0].first_s == start.timestamp() and p.bulk[1].last_s == end.timestamp() - 1
    assert p.bulk[1].first_s == p.bulk[0].last_s + 1


def test_the_plan_asks_for_all_the_vendor_holds_less_the_skew_and_not_what_has_not_begun() -> None:
    end = WEEK + timedelta(days=7)
    # 9 days after the week began: its first 2 days and 30 s are past retention.
    now = (WEEK + timedelta(days=9)).timestamp()
    p = plan.plan_pull(WEEK, end, now)
    edge = WEEK + timedelta(days=2, seconds=plan.DEFAULT_SKEW_S)
    assert p.expired == (WEEK, edge) and p.requested == (edge, end)
    # The hour that expires next is its own range, asked for first; the rest is one range.
    assert p.edge == plan.SubWindow(int(edge.timestamp()), int(edge.timestamp()) + plan.EDGE_S - 1)
    assert p.bulk == (plan.SubWindow(p.edge.last_s + 1, int(end.timestamp()) - 1),)
    assert p.sub_windows == (p.edge, *p.bulk)
    # The skew is at most a minute.
    assert plan.plan_pull(WEEK, end, now, skew_s=60).requested[0] == edge + timedelta(seconds=30)
    with pytest.raises(ValueError, match="skew"):
        plan.plan_pull(WEEK, end, now, skew_s=61)
    # The whole week gone: nothing is requested.
    gone = plan.plan_pull(WEEK, end, (end + timedelta(days=7)).timestamp())
    assert gone.sub_windows == () and gone.requested is None and gone.expired == (WEEK, end)
    # The open week on its third day: one range, not near the edge.
    open_ = plan.plan_pull(WEEK, end, (WEEK + timedelta(days=2, hours=5)).timestamp())
    assert open_.expired is None and open_.edge is None and open_.requested == (WEEK, end)
    # A week not begun: nothing.
    later = end + timedelta(days=7)
    assert plan.plan_pull(later, later + timedelta(days=7), now).requested is None


# -- paging -------------------------------------------------------------------------------


def test_minimum_requests_at_the_largest_page_size(simulator, frozen, sim) -> None:  # noqa: ANN001
    simulator.settings["trtc"].volume = 1000  # 10 full pages a UTC day: some local days end on a full page
    pull, records, client = walk(resource(sim.env()), WEEK, WEEK + timedelta(days=7), frozen)
    assert records == pull.api_total
    assert pull.complete
    assert client.http.stats.requests == sum(math.ceil(w.total / 100) for w in pull.windows)
    assert set(pull.stops()) <= {"page 0", "short page"}


def test_the_other_reading_of_page_still_ends_each_walk(simulator, frozen, sim) -> None:  # noqa: ANN001
    simulator.settings["trtc"].page_semantics = "current"  # data.page echoes the page asked for
    simulator.settings["trtc"].volume = 350
    pull, records, client = walk(resource(sim.env()), WEEK, WEEK + timedelta(days=7), frozen)
    assert records == pull.api_total > 0 and pull.complete
    assert client.http.stats.requests == sum(math.ceil(w.total / 100) for w in pull.windows)


def test_rate_limited_70010_is_retried_until_the_walk_completes(simulator, frozen) -> None:  # noqa: ANN001
    # A vendor stricter than its documented 200/s: its 70010 answers are retried, with backoff,
    # and every record still arrives.
    simulator.settings["trtc"].max_rps = 5  # read when the app is built: before it serves
    with running(simulator) as server:
        res = resource(server.env(), rate_per_s=100, max_retries=10, backoff_base_s=0.1)
        pull, records, client = walk(res, WEEK, WEEK + timedelta(days=2), frozen)
    limited = simtrtc.rate_limited_count(simulator.state)
    assert records == pull.api_total > 0 and pull.complete
    assert limited > 0 and client.http.stats.retries == limited
    assert client.http.stats.requests == limited + sum(math.ceil(w.total / 100) for w in pull.windows)


def test_no_records_70011_is_an_empty_window_not_an_error(simulator, frozen, sim) -> None:  # noqa: ANN001
    simulator.settings["trtc"].volume = 0
    pull, records, client = walk(resource(sim.env()), WEEK, WEEK + timedelta(days=7), frozen)
    assert records == 0 and pull.complete and pull.api_total == 0
    assert pull.stops() == {"70011": 1} and client.http.stats.requests == 1


@pytest.mark.parametrize(
    ("volume", "days_after_start", "minimum"),
    [
        (7, 6.5, 1),  # a young week of ~45 calls: one page
        (30, 6.5, 2),  # ~195 calls: two pages
        (7, 7.5, 1),  # near the retention edge: its hour is a range of its own
        (30, 7.5, 2),
    ],
)
def test_a_small_window_costs_at_most_the_paging_minimum_plus_one(
    simulator, sim, volume: int, days_after_start: float, minimum: int
) -> None:  # noqa: ANN001
    simulator.settings["trtc"].volume = volume
    now = (WEEK + timedelta(days=days_after_start)).timestamp()
    simulator.state.clock.set(now=now, auth_wall=True)
    pull, records, client = walk(resource(sim.env()), WEEK, WEEK + timedelta(days=7), now)
    lo = max(int(WEEK.timestamp()), math.ceil(now - plan.RETENTION_S + plan.DEFAULT_SKEW_S))
    hi = min(int(END.timestamp()) - 1, int(now))
    held = simtrtc.count_until(hi, volume) - simtrtc.count_until(lo - 1, volume)
    assert records == pull.api_total == held > 0 and pull.complete
    assert math.ceil(held / 100) == minimum
    assert client.http.stats.requests <= minimum + 1


class Vendor(httpx.AsyncBaseTransport):
    """A vendor with ``n`` records per window and a paging quirk:
    ``page_field``: "zero" (0 on the last page), "never0" (always page + 1), None (absent);
    ``total``: "true", "none" (absent) or an int (what it claims); ``ignore_page``: page 1 always."""

    def __init__(
        self, n: int, page_field: str | None, total: object = "true", ignore_page: bool = False
    ) -> None:
        self.n, self.page_field, self.total, self.ignore_page = n, page_field, total, ignore_page
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        body = json.loads(request.content)
        if not self.n:
            return httpx.Response(200, json={"errorCode": 70011, "errorMessage": "未找到任何记录"})
        page = 1 if self.ignore_page else body["page"]
        size = body["numberPerPage"]
        lo = (page - 1) * size
        ids = range(lo, min(self.n, lo + size))
        data: dict = {
            "callRecordList": [
                {"callId": f"{body['startTimestamp']}-{i}", "startCallTs": body["startTimestamp"]}
                for i in ids
            ]
        }
        if self.total == "true":
            data["totalNum"] = self.n
        elif self.total != "none":
            data["totalNum"] = self.total
        more = lo + size < self.n
        if self.page_field == "zero":
            data["page"] = page + 1 if more else 0
        elif self.page_field == "never0":
            data["page"] = page + 1
        return httpx.Response(200, json={"errorCode": 0, "errorMessage": "Success", "data": data})


@pytest.mark.parametrize(
    ("vendor", "requests", "stop", "complete"),
    [
        (Vendor(250, "zero"), 3, "short page", True),
        (Vendor(300, "zero"), 3, "page 0", True),
        (Vendor(300, "never0"), 3, "totalNum reached", True),  # page never 0: totalNum ends it
        (Vendor(250, None, total="none"), 3, "short page", True),  # neither page nor totalNum
        (Vendor(300, None, total="none"), 4, "empty page", True),  # a full last page: one more ask
        (Vendor(0, "zero"), 1, "70011", True),
        (Vendor(250, "zero", total=500), 5, "short page", False),  # totalNum over the truth: no prune
        (Vendor(450, "never0", total="none", ignore_page=True), 2, "repeated page", False),
    ],
)
def test_paging_stop_conditions(vendor: Vendor, requests: int, stop: str, complete: bool) -> None:
    res = TrtcResource(
        base_url="http://vendor.test", sdkappid="1400000001", secret_key="k", admin_identifier="a"
    )
    end = WEEK + timedelta(days=1)
    pull, records, _ = walk(res, WEEK, end, end.timestamp(), transport=vendor)
    assert vendor.requests == requests
    assert pull.stops() == {stop: 1}
    assert pull.complete is complete
    assert records == min(vendor.n, 100 if vendor.ignore_page else vendor.n)


# -- the retention edge (issue 11) -----------------------------------------------------------


class Hooked(Recording):
    """The real network; ``after(body)`` runs once each answer has arrived."""

    def __init__(self, after) -> None:  # noqa: ANN001
        super().__init__()
        self.after = after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        self.after(json.loads(request.content))
        return response


EDGE_VOLUME = 8_640  # a call every 10 s: "seconds inside the edge" is a handful of calls


def collect(res: TrtcResource, start: datetime, end: datetime, now: float, transport):  # noqa: ANN001, ANN201
    """Like ``walk``, keeping every landed record's (startCallTs, callId)."""

    async def go() -> tuple[Pull, list[tuple[int, str]], object]:
        client = res.client(transport=transport)
        pull = Pull(plan.plan_pull(start, end, now))
        got: list[tuple[int, str]] = []
        async with client.http:
            async for page in client.pages(pull):
                recs = json.loads(page.body)["data"]["callRecordList"]
                got += [(int(r["startCallTs"]), r["callId"]) for r in recs]
        return pull, got, client

    return asyncio.run(go())


def _edge_walk(simulator, sim, step_s: float):  # noqa: ANN001, ANN202
    """Day 1 of WEEK, 7 days and 2 hours after it began (its first 2 hours are past retention).
    Every answer moves the vendor's clock ``step_s`` on, so calls expire between pages."""
    simulator.settings["trtc"].volume = EDGE_VOLUME
    now = (WEEK + timedelta(days=7, hours=2)).timestamp()
    clock = simulator.state.clock
    clock.set(now=now, auth_wall=True)
    hook = Hooked(lambda body: clock.set(now=clock.now() + step_s, auth_wall=True))
    pull, got, client = collect(resource(sim.env()), WEEK, WEEK + timedelta(days=1), now, hook)
    day = [
        (simtrtc.start_ts(g, EDGE_VOLUME), simtrtc.call_id(simtrtc.Settings().seed, g))
        for g in range(
            simtrtc.count_until(int(WEEK.timestamp()) - 1, EDGE_VOLUME),
            simtrtc.count_until(int((WEEK + timedelta(days=1)).timestamp()) - 1, EDGE_VOLUME),
        )
    ]
    return now, pull, got, client, hook, day


def test_calls_seconds_inside_the_retention_edge_are_loaded(simulator, sim) -> None:  # noqa: ANN001
    now, pull, got, client, hook, day = _edge_walk(simulator, sim, step_s=0)
    cutoff = now - plan.RETENTION_S + plan.DEFAULT_SKEW_S
    # Everything the vendor holds from 30 s inside its retention on, the calls 30-40 s inside
    # included, each once; nothing older was asked for.
    assert sorted(got) == [c for c in day if c[0] >= cutoff]
    assert sorted(got)[0][0] < cutoff + 10 and pull.complete and pull.api_total == len(got)
    assert min(b["startTimestamp"] for b in hook.bodies()) == math.ceil(cutoff)
    # The edge hour went first, split into one-page slices after one look at its size.
    first = hook.bodies()[0]
    assert (first["startTimestamp"], first["endTimestamp"]) == (pull.plan.edge.first_s, pull.plan.edge.last_s)
    assert pull.splits == 1 and pull.plan.edge.seconds == plan.EDGE_S
    slices = [b for b in hook.bodies()[1:] if b["endTimestamp"] <= pull.plan.edge.last_s]
    assert len(slices) == 5 and all(b["page"] == 1 for b in slices)
    # 360 edge calls in 1 + 5 requests, the others in as many pages as they fill.
    bulk = [c for c in day if c[0] > pull.plan.edge.last_s]
    assert client.http.stats.requests == 1 + 5 + math.ceil(len(bulk) / 100)


def test_calls_expiring_between_pages_leave_no_gap(simulator, sim) -> None:  # noqa: ANN001
    # 20 s of vendor time per answer: the oldest calls expire while the edge is walked. Each
    # slice is one atomic answer, so what lands is every call from some second on, none
    # skipped, none twice; and only calls the vendor really let go of are missing.
    now, pull, got, client, hook, day = _edge_walk(simulator, sim, step_s=20)
    got.sort()
    assert len(set(got)) == len(got) and pull.complete
    assert got == [c for c in day if c[0] >= got[0][0]]
    requests_before_the_edge_was_done = 1 + 5
    assert got[0][0] <= now - plan.RETENTION_S + 20 * requests_before_the_edge_was_done
    assert simulator.state.clock.now() > now + 20 * 70  # the clock did move throughout


def test_a_count_that_drops_mid_walk_makes_the_walk_incomplete(simulator, frozen, sim) -> None:  # noqa: ANN001
    # The vendor deletes a call of page 1 while pages 2..N are fetched: their offsets shift
    # one on, so one call would go unseen. The walk says so: no row may be marked gone.
    def after(body: dict) -> None:
        if body["page"] == 1:
            first = simtrtc.count_until(body["startTimestamp"] - 1, 500)
            simulator.state.deleted.add(f"trtc:{simtrtc.call_id(simtrtc.Settings().seed, first)}")

    pull, records, client = walk(resource(sim.env()), WEEK, END, frozen, transport=Hooked(after))
    assert not pull.complete and pull.stops() == {"count dropped": 1}
    assert records == pull.api_total - 1  # one call skipped: the walk must not count as whole
