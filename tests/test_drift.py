"""Schema drift through a real run (issue 15, item 2): the CRM simulator's first page of call
logs is rewritten on the wire, so the asset reads a vendor whose records changed shape.

- a new, undocumented field: kept verbatim in raw, the record typed, the run succeeds, and the
  shared ``unexpected_fields`` check (every source's) fails with a WARN naming the key;
- a required field missing: the record goes to ``raw.rejects`` with a reason naming it and
  ``no_rejects`` fails;
- a changed type: coerced where nothing is lost (an integer sent as the string "42", a text
  field sent as a number), rejected where it cannot be ("4x2" for an integer).

And every source's clean run reports no unexpected field (the check has no false positive
against the documented records the simulators serve).
"""

from __future__ import annotations

import json

import psycopg
import pytest
from dagster import AssetCheckSeverity
from starlette.responses import Response

import simulator.crm as crm_sim
from simulator.app import Simulator
from tests.helpers import checks, metadata
from tests.test_fault_matrix import SOURCES, Source, run
from tests.test_fault_matrix import served as served  # the fixture

CRM = next(s for s in SOURCES if s.name == "crm")


def _drifted(body: bytes) -> bytes:
    """The first page's records 0-5 changed; the rest of the page as sent."""
    doc = json.loads(body)
    records = doc["data"]["list"]
    records[0]["sentimentScore"] = 0.82  # a field no document names
    records[1]["sentimentScore"] = None
    del records[2]["callId"]  # required
    records[3]["duration"] = "42"  # an integer as a string: lossless
    records[4]["agentName"] = 12345  # text as a number: lossless (its JSON text)
    records[5]["duration"] = "4x2"  # not an integer
    return json.dumps(doc).encode()


@pytest.fixture
def drifting(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Rewrites the first call-log page the simulator serves; yields the ids it changed."""
    changed: list[int] = []
    plain = crm_sim._json_body

    def body(raw: bytes) -> Response:
        if not changed and raw.startswith(crm_sim._OK_HEAD.encode() + b'{"list":'):
            doc = json.loads(raw)
            if len(doc["data"]["list"]) >= 6:
                changed.extend(r["id"] for r in doc["data"]["list"][:6])
                return plain(_drifted(raw))
        return plain(raw)

    monkeypatch.setattr(crm_sim, "_json_body", body)
    return changed


@pytest.fixture(params=SOURCES, ids=[s.name for s in SOURCES])
def source(request: pytest.FixtureRequest) -> Source:
    return request.param


@pytest.mark.parametrize("source", [CRM], ids=["crm"])
def test_new_missing_and_retyped_fields_are_kept_rejected_or_coerced_and_reported(
    source: Source, drifting: list[int], served: Simulator, db: psycopg.Connection
) -> None:
    result = run(source)  # drift never fails a run by itself
    ids = drifting
    assert len(ids) == 6
    meta = metadata(result, source.asset_key)
    assert meta["records_received"] == 250 == meta["rows_landed"]  # all in raw, the rejected too
    by_check = {e.check_name: e for e in result.get_asset_check_evaluations()}
    # the new field: kept in raw, its record typed, reported by key and count (no value)
    unexpected = by_check["unexpected_fields"]
    assert unexpected.passed is False and unexpected.severity == AssetCheckSeverity.WARN
    assert unexpected.metadata["unexpected_fields"].value == {"raw.crm_call": {"sentimentScore": 2}}
    assert "0.82" not in str(unexpected.metadata) + str(unexpected.description)
    kept = db.execute(
        "SELECT record->'sentimentScore' FROM raw.crm_call WHERE record_key = %s", (str(ids[0]),)
    )
    assert kept.fetchone()[0] == 0.82
    typed = db.execute("SELECT count(*) FROM core.fact_crm_call WHERE id = ANY(%s)", (ids[:2],)).fetchone()[0]
    assert typed == 2
    # the missing required field and the lossy retype: rejected with a reason, the check fails
    rejects = dict(db.execute("SELECT record_key, reason FROM raw.rejects").fetchall())
    assert set(rejects) == {str(ids[2]), str(ids[5])}
    assert "callId" in rejects[str(ids[2])] and "missing" in rejects[str(ids[2])]
    assert "duration" in rejects[str(ids[5])] and "integer" in rejects[str(ids[5])]
    assert checks(result)["no_rejects"] is False
    assert db.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0] == 248
    # the lossless retypes: coerced
    rows = db.execute(
        "SELECT id, duration, agent_name FROM core.fact_crm_call WHERE id = ANY(%s)", (ids[3:5],)
    ).fetchall()
    typed_rows = {r[0]: r[1:] for r in rows}
    assert typed_rows[ids[3]][0] == 42 and typed_rows[ids[4]][1] == "12345"


def test_a_clean_run_of_every_source_reports_no_unexpected_field(
    source: Source, request: pytest.FixtureRequest, db: psycopg.Connection
) -> None:
    request.getfixturevalue("served")
    result = run(source)
    assert "unexpected_fields" in checks(result)
    assert all(e.passed for e in result.get_asset_check_evaluations() if e.check_name == "unexpected_fields")
