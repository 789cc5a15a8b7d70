"""A vendor key is never made up: the accidental SERIAL sequences are gone (migration 0012)."""

import psycopg
import pytest


def test_no_core_column_has_a_sequence_default(db: psycopg.Connection) -> None:
    assert (
        db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema IN ('raw', 'core', 'mart') AND column_default LIKE 'nextval%%'"
        ).fetchall()
        == []
    )


def test_a_call_without_its_vendor_key_is_refused(db: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.NotNullViolation):
        db.execute(
            "INSERT INTO core.fact_crm_call (created_at, call_id, _loaded_at) VALUES (now(), 'x', now())"
        )
