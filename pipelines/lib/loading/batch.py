"""Landing one batch: its statement in a savepoint, and after each refusal the next attempt
``fallback`` names, until one lands or none is left (the load then fails)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from pipelines.lib.loading.fallback import Attempt, next_attempt
from pipelines.lib.loading.json_safety import UnparsablePage
from pipelines.lib.loading.result import LoadError
from pipelines.lib.loading.spec import SourceSpec
from pipelines.lib.loading.statement import batch_params, batch_statement


async def land_batch(
    conn: psycopg.AsyncConnection, spec: SourceSpec, params: Mapping[str, Any], attempt: Attempt, name: str
) -> tuple[Attempt, list[int]]:
    """Try ``attempt``, then what ``next_attempt`` says after each refusal; return the try
    that landed and its rows written per target. ``name`` names the batch in a ``LoadError``
    (table, partition, number), which never quotes a record's values."""
    cur = conn.cursor()
    outcome = await _try(conn, cur, spec, params, attempt)
    while isinstance(outcome, psycopg.Error):
        attempt = _next(attempt, outcome, spec, name)
        outcome = await _try(conn, cur, spec, params, attempt)
    return attempt, outcome


async def _try(
    conn: psycopg.AsyncConnection,
    cur: psycopg.AsyncCursor,
    spec: SourceSpec,
    params: Mapping[str, Any],
    attempt: Attempt,
) -> list[int] | psycopg.Error:
    """The rows ``attempt`` wrote per target, or PostgreSQL's refusal of a record in it."""
    try:
        async with conn.transaction():  # a savepoint: a refused try leaves no trace
            await cur.execute(
                batch_statement(spec, attempt.shape),
                batch_params(spec, params, attempt.pages, attempt.refused),
            )
            row = await cur.fetchone()
    except (psycopg.errors.UniqueViolation, psycopg.errors.DataError) as exc:
        return exc
    assert row is not None
    return [int(n) for n in row]


def _next(attempt: Attempt, refusal: psycopg.Error, spec: SourceSpec, name: str) -> Attempt:
    """The attempt after a refusal; raises ``LoadError`` when nothing is left to try."""
    try:
        after = next_attempt(attempt, refusal, spec.records_path)
    except UnparsablePage as problem:
        raise LoadError(f"{name}: {problem}") from None
    if after is None:
        # PostgreSQL's primary message only: its DETAIL and CONTEXT quote record values.
        primary = refusal.diag.message_primary or type(refusal).__name__
        raise LoadError(f"{name}: PostgreSQL refused it ({refusal.sqlstate}: {primary})") from None
    return after
