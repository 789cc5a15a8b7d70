"""The shared metadata and the column shapes every table of a kind repeats."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

SCHEMAS = ("raw", "core", "mart")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def tstz(name: str, comment: str, nullable: bool = True, **kw) -> Column:
    return Column(name, DateTime(timezone=True), nullable=nullable, comment=comment, **kw)


def loaded_at() -> Column:
    return tstz(
        "_loaded_at",
        "When the row last changed: a pull that returns it unchanged writes nothing (raw.pull_log says "
        "when each window was last pulled).",
        nullable=False,
    )


def gone_at() -> Column:
    return tstz(
        "_gone_at",
        "When a complete pull of the row's window (a snapshot, for a dimension) first no longer returned "
        "it; NULL while the vendor returns it. The row is kept: analysts filter on it (mart: is_deleted).",
    )


def raw_table(name: str, comment: str) -> Table:
    """A landing table: every record verbatim, keyed by its natural key.

    All raw tables share one shape so the loader needs no per-source code to land records.
    """
    table = Table(
        name,
        metadata,
        Column("record_key", Text, primary_key=True, comment="The record's natural key, as text."),
        Column("partition_key", Text, nullable=False, comment="Dagster partition that pulled the record."),
        tstz("window_start", "Start of the request window (inclusive).", nullable=False),
        tstz("window_end", "End of the request window (exclusive).", nullable=False),
        tstz(
            "fetched_at",
            "When the pull that last changed this record started (one that returns it unchanged writes "
            "nothing; raw.pull_log lists every pull).",
            nullable=False,
        ),
        Column("record", JSONB, nullable=False, comment="The record exactly as the vendor sent it."),
        schema="raw",
        comment=comment,
    )
    Index(f"ix_{name}_partition", table.c.partition_key, table.c.fetched_at)
    return table


__all__ = ["metadata", "raw_table", "tstz", "loaded_at", "gone_at", "SCHEMAS"]
