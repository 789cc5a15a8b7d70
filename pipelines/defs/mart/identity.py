"""The operator's identity map (CUSTOMER_IDENTITY_FILE): a CSV of ``app_user_id,phone_number``
that links app user ids to phone numbers, loaded into ``core.customer_identity`` as a whole."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

COLUMNS = ("app_user_id", "phone_number")


class IdentityFileError(ValueError):
    pass


@dataclass
class IdentityFile:
    rows: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0  # later rows of an app user id already listed (the first one wins)
    blank: int = 0  # rows without an id or a number


def read(path: Path) -> IdentityFile:
    """The file's rows; errors name the file and line, never a value (they are customer data)."""
    out = IdentityFile()
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise IdentityFileError(
                f"{path.name}: header lacks {', '.join(missing)} (expected {','.join(COLUMNS)})"
            )
        for row in reader:
            app_user_id = (row.get("app_user_id") or "").strip()
            phone = (row.get("phone_number") or "").strip()
            if not app_user_id or not phone:
                out.blank += 1
            elif app_user_id in out.rows:
                out.duplicates += 1
            else:
                out.rows[app_user_id] = phone
    return out


def replace(conn: psycopg.Connection, rows: dict[str, str]) -> None:
    """Make core.customer_identity hold exactly ``rows``, in the caller's transaction."""
    conn.execute("DELETE FROM core.customer_identity")
    now = datetime.now(UTC)
    with conn.cursor().copy(
        "COPY core.customer_identity (app_user_id, phone_number, _loaded_at) FROM STDIN"
    ) as copy:
        for app_user_id, phone in rows.items():
            copy.write_row((app_user_id, phone, now))
