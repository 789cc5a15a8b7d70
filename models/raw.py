"""Tables of the ``raw`` schema shared by every source."""

from sqlalchemy import BigInteger, Column, Identity, Index, Table, Text
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
