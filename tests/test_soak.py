"""The soak at CI size (issue 15, item 4): a few partitions per source, a small volume, every
fact table reconciled against the simulator's truth. The large run is ``python -m tests.soak``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests.soak import TABLES, soak


@pytest.fixture
def truth_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    """A second fresh, migrated warehouse: where the fault-free walk of the simulator lands."""
    name = f"ccw_truth_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield urlunsplit(urlsplit(pg_admin_url)._replace(path=f"/{name}"))
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_soak_with_faults_deletions_and_late_records_loses_and_duplicates_nothing(
    warehouse_url: str, truth_url: str
) -> None:
    # Every step happens: every load faulted, every partition late, every one with deletions.
    report = soak(
        seed=7,
        partitions_per_source=3,
        volume=120,
        soak_url=warehouse_url,
        truth_url=truth_url,
        fault_share=1.0,
        delete_share=1.0,
        late_share=1.0,
    )
    assert report.failures == []
    assert sum(report.faults.values()) == 4 * 3
    assert report.retries >= report.faults_fired > 0  # every fault met was retried away
    assert report.late_reloads == 4 * 3 and report.late_records > 0 and report.deletions > 0
    assert set(report.tables) == {t.core for t in TABLES.values()}
    for name, table in report.tables.items():
        assert table["mismatches"] == {}, name
        assert table["served"] > 0 and table["live"] == table["served"], name
        assert table["rows"] == table["live"] + table["gone"], name
    # deletions were made in every fact table and each is marked gone
    assert all(t["gone"] > 0 for t in report.tables.values())
    assert sum(t["gone"] for t in report.tables.values()) == report.deletions
    assert report.ok
