"""What a partition's load reports, and the error it raises when PostgreSQL refuses it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.lib.loading.gone import GoneRefusal


class LoadError(RuntimeError):
    """PostgreSQL refused a batch. The message names the table, the partition and
    PostgreSQL's primary message only: its DETAIL and CONTEXT quote record values."""


@dataclass
class LoadResult:
    records_received: int = 0
    rows_landed: int = 0
    rows_upserted: dict[str, int] = field(default_factory=dict)
    rows_gone: dict[str, int] = field(default_factory=dict)  # rows this pull marked gone
    gone_refused: list[GoneRefusal] = field(default_factory=list)
    rejects: int = 0
    refused_records: int = 0  # records PostgreSQL could not take (in raw.rejects)
    batches: int = 0

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "records_received": self.records_received,
            "rows_landed": self.rows_landed,
            "rejects": self.rejects,
        }
        for table, n in self.rows_upserted.items():
            out[f"rows_upserted {table}"] = n
        for table, n in self.rows_gone.items():
            out[f"rows_gone {table}"] = n
        if self.refused_records:
            out["records_postgres_refused"] = self.refused_records
        if self.gone_refused:
            out["gone_refused"] = ", ".join(f"{r.table}: {r.missing} of {r.live}" for r in self.gone_refused)
        return out
