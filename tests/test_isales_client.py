"""The iSales client and SQL parses, without Dagster: request ranges, error envelopes, 401,
paging, and the guarded ``request``/``operTime`` parses in the warehouse."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from pipelines.defs.sources.isales.client import (
    ERROR_CODES,
    ISalesResource,
    VdnPull,
    check_envelope,
    parse_vdn_ids,
    request_ranges,
)
from pipelines.lib.http import VendorAuthError, VendorError, VendorResponseError
from pipelines.lib.settings import SettingError
from simulator.app import Simulator
from simulator.server import ThreadedServer

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _resource(server: ThreadedServer, **overrides: object) -> ISalesResource:
    env = server.env()
    fields = {
        "base_url": env["ISALES_BASE_URL"],
        "ak": env["ISALES_AK"],
        "sk": env["ISALES_SK"],
        "vdn_ids": env["ISALES_VDN_IDS"],
        "timezone": env["ISALES_TIMEZONE"],
        "sign_variant": env["ISALES_SIGN_VARIANT"],
        "rate_per_s": 0,
        **overrides,
    }
    return ISalesResource(**fields)


async def _pull(resource: ISalesResource, vdn: int, start: datetime, end: datetime) -> tuple[list, VdnPull]:
    client = resource.client()
    pull = VdnPull(vdn)
    async with client.http:
        pages = [p async for p in client.call_log_pages(vdn, start, end, pull)]
    return pages, pull


def test_a_week_is_one_range_ending_one_second_before_monday() -> None:
    start = datetime(2026, 11, 9, tzinfo=SHANGHAI)
    assert request_ranges(start, start + timedelta(days=7), SHANGHAI) == [
        ("2026-11-09 00:00:00", "2026-11-15 23:59:59")
    ]


def test_a_dst_week_is_split_so_no_range_exceeds_seven_days() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 10, 19, tzinfo=berlin)  # the week of the fall-back (25 Oct): 169 hours
    ranges = request_ranges(start, datetime(2026, 10, 26, tzinfo=berlin), berlin)
    assert len(ranges) == 2
    assert ranges[0][0] == "2026-10-19 00:00:00" and ranges[-1][1] == "2026-10-25 23:59:59"
    for begin, end in ranges:
        a = datetime.fromisoformat(begin).replace(tzinfo=berlin)
        b = datetime.fromisoformat(end).replace(tzinfo=berlin)
        assert b.timestamp() - a.timestamp() <= 7 * 86400
    # contiguous: the second range starts one second after the first ends
    first_end = datetime.fromisoformat(ranges[0][1]).replace(tzinfo=berlin)
    assert datetime.fromisoformat(ranges[1][0]).replace(tzinfo=berlin) - first_end == timedelta(seconds=1)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("0200001", "参数异常"),
        ("02000001", "参数值为空"),
        ("0200033", "外呼数据不存在"),
        ("02000007", "参数值大小不正确"),
    ],
)
def test_error_envelope_names_code_and_meaning(code: str, meaning: str) -> None:
    check = check_envelope("/rest/isales/v1/openapi/campaigns/1/calllogs")
    with pytest.raises(VendorError) as info:
        check({"returnCode": code, "resultCode": code, "resultDesc": "x", "returnDesc": "x"})
    assert info.value.code == code  # a string, leading zero kept
    assert meaning in str(info.value) and code in str(info.value)
    assert "/campaigns/1/calllogs" in str(info.value)


def test_codes_are_compared_as_strings() -> None:
    assert ERROR_CODES["0200001"] != ERROR_CODES["02000001"]
    check = check_envelope("/x")
    check({"returnCode": "0200000", "resultCode": "0200000"})  # success
    with pytest.raises(VendorError, match="not in seed 003"):
        check({"resultCode": 200000})  # a number loses its leading zero: not success
    with pytest.raises(VendorResponseError):
        check({"result": []})  # no code at all is not a silent success
    with pytest.raises(VendorAuthError, match="ISALES_AK and ISALES_SK"):
        check({"resultCode": "401", "resultDesc": "Unauthorized"})


def test_vdn_ids_setting() -> None:
    assert parse_vdn_ids("1, 2,2,9999") == [1, 2, 9999]
    for bad in ("", "0", "10000", "a"):
        with pytest.raises(SettingError, match="ISALES_VDN_IDS"):
            parse_vdn_ids(bad)


@pytest.fixture
def small_sim(simulator: Simulator) -> Simulator:
    simulator.settings["isales"].volume = 30  # 210 a week: pages of 100, 100, 10
    return simulator


def test_wrong_secret_is_an_auth_error_naming_the_settings(small_sim: Simulator, sim: ThreadedServer) -> None:
    start = datetime(2026, 11, 9, tzinfo=SHANGHAI)
    resource = _resource(sim, sk="not-the-secret")
    with pytest.raises(VendorAuthError) as info:
        asyncio.run(_pull(resource, 1, start, start + timedelta(days=7)))
    text = str(info.value)
    assert "401" in text and "ISALES_AK" in text and "ISALES_SK" in text and "ISALES_SIGN_VARIANT" in text
    assert "not-the-secret" not in text
    # the other signing variant is refused the same way (the server expects hex)
    with pytest.raises(VendorAuthError, match="ISALES_SK"):
        asyncio.run(_pull(_resource(sim, sign_variant="base64"), 1, start, start + timedelta(days=7)))


def test_paging_fetches_the_minimum_and_stops_on_the_short_page(
    small_sim: Simulator, sim: ThreadedServer
) -> None:
    start = datetime(2026, 11, 9, tzinfo=SHANGHAI)
    pages, pull = asyncio.run(_pull(_resource(sim), 2, start, start + timedelta(days=7)))
    assert [p.records for p in pages] == [100, 100, 10]
    assert pull.api_count == 210 and pull.pages == 3 and pull.records == 210
    assert small_sim.state.requests["isales /rest/isales/v1/openapi/campaigns/{vdnId}/calllogs"] == 3
    ids = [r["id"] for p in pages for r in json.loads(p.body)["result"]]
    assert len(set(ids)) == 210


@pytest.mark.parametrize(("volume", "pages"), [(0, [0]), (1, [7]), (100, [100] * 7), (143, [100] * 10 + [1])])
def test_a_week_costs_the_paging_minimum(simulator: Simulator, volume: int, pages: list[int]) -> None:
    """Issue 11: ceil(N / 100) requests for N records (one for none); ``count`` on the first
    page spares the empty request a full last page would otherwise need."""
    simulator.settings["isales"].volume = volume
    server = ThreadedServer(simulator).start()
    try:
        start = datetime(2026, 11, 9, tzinfo=SHANGHAI)
        got, pull = asyncio.run(_pull(_resource(server), 1, start, start + timedelta(days=7)))
    finally:
        server.stop()
    assert [p.records for p in got] == pages
    assert pull.api_count == 7 * volume == sum(pages)
    assert pull.ranges == 1 and pull.pages == len(pages)
    served = simulator.state.requests["isales /rest/isales/v1/openapi/campaigns/{vdnId}/calllogs"]
    assert served == max(1, -(-7 * volume // 100))


def test_file_servers_page_until_a_short_page_without_count(
    small_sim: Simulator, sim: ThreadedServer
) -> None:
    small_sim.settings["isales"].file_servers_per_vdn = 7
    client = _resource(sim, limit=3).client()

    async def pull() -> list:
        async with client.http:
            return [p async for p in client.file_server_pages(1)]

    pages = asyncio.run(pull())
    assert [p.records for p in pages] == [3, 3, 1]
    assert all(p.total is None for p in pages)  # count absent, as in the real answers


def test_guarded_parses_in_sql(db: psycopg.Connection) -> None:
    rows = db.execute(
        """
        SELECT core.try_jsonb('{"defId":"456","vdnId":2}'), core.try_jsonb('{"defId":"45'),
               core.try_iso_timestamp('"2022-08-19T14:18:31.000+00:00"', 'Asia/Shanghai'),
               core.try_iso_timestamp('"2022-08-19T14:18:31.000+08:00"', 'UTC'),
               core.try_iso_timestamp('"2022-08-19T14:18:31Z"', 'UTC'),
               core.try_iso_timestamp('"2022-08-19 14:18:31"', 'Asia/Shanghai'),
               core.try_iso_timestamp('1660889911090', 'UTC'),
               core.try_iso_timestamp('"2022-02-30T14:18:31+08:00"', 'UTC'),
               core.try_iso_timestamp('"yesterday"', 'UTC')
        """
    ).fetchone()
    utc = ZoneInfo("UTC")
    assert rows[0] == {"defId": "456", "vdnId": 2}
    assert rows[1] is None
    assert rows[2] == datetime(2022, 8, 19, 14, 18, 31, tzinfo=utc)  # the offset it carries
    assert rows[3] == datetime(2022, 8, 19, 6, 18, 31, tzinfo=utc)
    assert rows[4] == datetime(2022, 8, 19, 14, 18, 31, tzinfo=utc)
    assert rows[5] == datetime(2022, 8, 19, 6, 18, 31, tzinfo=utc)  # naive: ISALES_TIMEZONE
    assert rows[6] == datetime(2022, 8, 19, 6, 18, 31, 90000, tzinfo=utc)  # epoch ms (drift)
    assert rows[7] is None and rows[8] is None
