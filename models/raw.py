"""Tables of the ``raw`` schema shared by every source."""

from sqlalchemy import BigInteger, Boolean, Column, Identity, Index, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from models.base import metadata, tstz

rejects = Table(
    "rejects",
    metadata,
    Column("reject_id", BigInteger, Identity(), primary_key=True, comment="Surrogate key."),
    Column("source_table", Text, nullable=False, comment="The core table the record was meant for."),
    Column("partition_key", Text, nullable=False, comment="Dagster partition that pulled the record."),
    Column("record_key", Text, comment="The record's natural key, when it could be read."),
    Column("reason", Text, nullable=False, comment="Why the record could not be normalized."),
    Column("record", JSONB, nullable=False, comment="The record exactly as the vendor sent it."),
    tstz("fetched_at", "When the pull that returned the record started.", nullable=False),
    schema="raw",
    comment="Records that could not be normalized into core, until a later pull types them or a complete pull "
    "of their window no longer returns them.",
)
Index("ix_rejects_table_partition", rejects.c.source_table, rejects.c.partition_key)

pull_log = Table(
    "pull_log",
    metadata,
    Column(
        "raw_table", Text, primary_key=True, comment="The raw table the pull landed in (raw.<source>_...)."
    ),
    Column("partition_key", Text, primary_key=True, comment="The raw partition key of the load."),
    tstz(
        "fetched_at",
        "When the pull started (the fetched_at of what it wrote).",
        nullable=False,
        primary_key=True,
    ),
    Column(
        "kind",
        Text,
        nullable=False,
        comment="'full' (the window, or the open window up to now) or 'incremental'.",
    ),
    tstz("pulled_from", "Start of the range the pull asked for (inclusive).", nullable=False),
    tstz("pulled_to", "End of the range the pull asked for (exclusive).", nullable=False),
    Column(
        "complete",
        Boolean,
        nullable=False,
        comment="Whether the pull could mark rows gone (it saw every record).",
    ),
    Column("records", BigInteger, nullable=False, comment="Records the vendor returned."),
    schema="raw",
    comment="Every successful pull of a partition, written in the load's transaction: rows are rewritten only "
    "when they change, so when a window was last pulled is recorded here, per pull.",
)
