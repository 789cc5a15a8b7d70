"""Settings read from the environment at definition load time (partitions need the
vendor's zone and first day before any run); a malformed value names its variable."""

from __future__ import annotations

import os
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Shanghai"
# Recent enough that a new install does not face years of backfill, fixed so partition
# keys do not move from one day to the next.
DEFAULT_START_DATE = "2026-09-01"


class SettingError(ValueError):
    pass


def timezone(source: str) -> str:
    name = f"{source.upper()}_TIMEZONE"
    value = os.environ.get(name) or DEFAULT_TIMEZONE
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingError(f"{name}={value!r} is not an IANA time zone (e.g. Asia/Shanghai)") from None
    return value


def start_date_variable(source: str) -> str:
    """The variable that sets a source's first partition."""
    return f"{source.upper()}_START_DATE"


def start_date(source: str) -> str:
    name = start_date_variable(source)
    value = os.environ.get(name) or DEFAULT_START_DATE
    try:
        date.fromisoformat(value)
    except ValueError:
        raise SettingError(f"{name}={value!r} is not a date (YYYY-MM-DD)") from None
    return value


def int_list(name: str, value: str, lo: int | None = None, hi: int | None = None) -> list[int]:
    """Parse a comma list of integers such as <SOURCE>_IDS=1,2,3."""
    out: list[int] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise SettingError(
                f"{name}: {part!r} is not an integer (expected a comma list like 1,2,3)"
            ) from None
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            raise SettingError(f"{name}: {n} is outside {lo}..{hi}")
        out.append(n)
    return out
