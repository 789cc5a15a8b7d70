"""The demo's choices that do not need it running: ports and the error for a taken one, and
start dates whose partitions are exactly the ones the first load fills."""

from __future__ import annotations

import argparse
import os
import socket
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from dagster import DailyPartitionsDefinition, MonthlyPartitionsDefinition, WeeklyPartitionsDefinition

from pipelines import demo
from pipelines.demo_services import DemoError, require_free


def test_a_port_another_program_holds_is_an_error_naming_it_and_its_process() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(DemoError) as error:
            require_free(port, "Dagster webserver", "--ui-port or DEMO_UI_PORT")
    message = str(error.value)
    assert f"port {port} for the Dagster webserver is already taken by pid {os.getpid()}" in message
    assert "--ui-port" in message


def test_ports_come_from_the_flag_then_the_environment_then_the_last_start(monkeypatch) -> None:
    monkeypatch.setenv("DEMO_UI_PORT", "13001")
    monkeypatch.delenv("DEMO_SIM_PORT", raising=False)
    monkeypatch.delenv("DEMO_PG_PORT", raising=False)
    args = argparse.Namespace(sim_port=None, ui_port=None, pg_port=15000)
    assert demo.choose_ports(args, {"sim": 18000, "ui": 3000}) == {"sim": 18000, "ui": 13001, "pg": 15000}
    assert demo.choose_ports(argparse.Namespace(sim_port=None, ui_port=None, pg_port=None), {}) == {
        "sim": 8765,
        "ui": 13001,
        "pg": 55432,
    }


@pytest.mark.parametrize("today", [date(2026, 12, 6), date(2026, 12, 7), date(2026, 3, 1)])
def test_start_dates_make_exactly_the_partitions_the_first_load_fills(today: date) -> None:
    tz = "Asia/Shanghai"
    dates = demo.start_dates(dict.fromkeys(demo.RECENT, today))
    now = datetime(today.year, today.month, today.day, 12, tzinfo=ZoneInfo(tz))
    defs = {
        "crm": DailyPartitionsDefinition(start_date=dates["CRM_START_DATE"], timezone=tz, end_offset=1),
        "isales": WeeklyPartitionsDefinition(
            start_date=dates["ISALES_START_DATE"], timezone=tz, day_offset=1, end_offset=1
        ),
        "trtc": WeeklyPartitionsDefinition(
            start_date=dates["TRTC_START_DATE"], timezone=tz, day_offset=1, end_offset=1
        ),
        "pushlog": MonthlyPartitionsDefinition(
            start_date=dates["PUSHLOG_START_DATE"], timezone=tz, end_offset=1
        ),
    }
    for source, partitions in defs.items():
        keys = partitions.get_partition_keys(current_time=now)
        assert len(keys) == demo.RECENT[source], (source, keys)
        assert keys[0] == dates[f"{source.upper()}_START_DATE"]
