"""What a batch PostgreSQL refused tries next. Each step gives up one speed-up, so a batch
is tried at most four times, and a refusal no step answers fails the load:

- a key already there (a ``UniqueViolation`` of plain INSERTs): upsert, for this batch and
  the rest of the load (``write_mode``);
- a value the plain casts refuse (a ``DataError`` of the fast SELECTs): the guarded SELECTs,
  which reject just that record to ``raw.rejects``;
- a ``DataError`` of the guarded SELECTs, which never raise: PostgreSQL refused a record
  itself. Such records are isolated (``json_safety``) and land in ``raw.rejects`` as
  made-safe copies; the rest of the batch lands.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from pipelines.lib.loading.json_safety import Refused, split_batch
from pipelines.lib.loading.statement import Shape


@dataclass(frozen=True)
class Attempt:
    """One try at a batch: its pages, how they are written, and the refused records."""

    pages: list[bytes]
    shape: Shape
    refused: tuple[Refused, ...] = ()


def next_attempt(attempt: Attempt, error: psycopg.Error, records_path: Sequence[str]) -> Attempt | None:
    """The attempt after ``attempt`` was refused with ``error``; None when nothing is left
    to try. Raises ``UnparsablePage`` for a batch holding a page that is not JSON."""
    shape = attempt.shape
    if isinstance(error, psycopg.errors.UniqueViolation):
        if shape.upsert:
            return None
        return dataclasses.replace(attempt, shape=dataclasses.replace(shape, upsert=True))
    if not isinstance(error, psycopg.errors.DataError) or shape.refused:
        return None
    if shape.fast:
        return dataclasses.replace(attempt, shape=dataclasses.replace(shape, fast=False))
    pages, refused = split_batch(attempt.pages, records_path)
    if not refused:  # nothing to isolate: the refusal was not about one record
        return None
    return Attempt(pages, dataclasses.replace(shape, refused=True), tuple(refused))
