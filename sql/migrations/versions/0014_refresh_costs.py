"""Every refresh costs what changed (issue 20).

- ``raw.pull_log``: one row per successful pull of a partition (which kind, over what range).
  Loads no longer rewrite unchanged rows, so a row's ``_loaded_at`` (a raw record's
  ``fetched_at``) says when it last changed; when a window was last pulled lives here.
- ``raw.pushlog_cursor`` is dropped: the high-water mark of every incremental source is read
  from its core table (``pipelines/lib/refresh.py``), one way for all. The downgrade creates
  it again, empty: the next push-log pull is then a full one, which rebuilds it.
- The comments of ``_loaded_at`` and of raw's ``fetched_at`` say what they mean now.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOADED_AT = (
    "When the row last changed: a pull that returns it unchanged writes nothing (raw.pull_log says when each "
    "window was last pulled)."
)
LOADED_AT_BEFORE = "When the pipeline last wrote this row (for a dimension: when the vendor last listed it)."
FETCHED_AT = (
    "When the pull that last changed this record started (one that returns it unchanged writes nothing; "
    "raw.pull_log lists every pull)."
)
FETCHED_AT_BEFORE = "When the pull that last returned this record started."


def _comment(schema: str, column: str, comment: str, *, keyed: bool) -> None:
    """The comment of ``column`` in every table of ``schema`` that has it (raw: the landing
    tables, with their request window). The comments are this module's constants."""
    tables = op.get_bind().execute(
        sa.text(
            "SELECT c.table_name FROM information_schema.columns c "
            "WHERE c.table_schema = :schema AND c.column_name = :column AND (NOT :keyed OR EXISTS ("
            "SELECT FROM information_schema.columns k WHERE k.table_schema = c.table_schema "
            "AND k.table_name = c.table_name AND k.column_name = 'window_start')) ORDER BY 1"
        ),
        {"schema": schema, "column": column, "keyed": keyed},
    )
    literal = comment.replace("'", "''")
    for (table,) in tables.fetchall():
        op.execute(f'COMMENT ON COLUMN "{schema}"."{table}"."{column}" IS \'{literal}\'')


def upgrade() -> None:
    op.create_table(
        "pull_log",
        sa.Column(
            "raw_table",
            sa.Text(),
            nullable=False,
            comment="The raw table the pull landed in (raw.<source>_...).",
        ),
        sa.Column("partition_key", sa.Text(), nullable=False, comment="The raw partition key of the load."),
        sa.Column(
            "fetched_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the pull started (the fetched_at of what it wrote).",
        ),
        sa.Column(
            "kind",
            sa.Text(),
            nullable=False,
            comment="'full' (the window, or the open window up to now) or 'incremental'.",
        ),
        sa.Column(
            "pulled_from",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="Start of the range the pull asked for (inclusive).",
        ),
        sa.Column(
            "pulled_to",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="End of the range the pull asked for (exclusive).",
        ),
        sa.Column(
            "complete",
            sa.Boolean(),
            nullable=False,
            comment="Whether the pull could mark rows gone (it saw every record).",
        ),
        sa.Column("records", sa.BigInteger(), nullable=False, comment="Records the vendor returned."),
        sa.PrimaryKeyConstraint("raw_table", "partition_key", "fetched_at", name=op.f("pk_pull_log")),
        schema="raw",
        comment="Every successful pull of a partition, written in the load's transaction: rows are rewritten "
        "only when they change, so when a window was last pulled is recorded here, per pull.",
    )
    op.execute("ALTER TABLE raw.pull_log OWNER TO loader")  # like everything in raw (0011)
    op.drop_table("pushlog_cursor", schema="raw")
    _comment("core", "_loaded_at", LOADED_AT, keyed=False)
    _comment("raw", "fetched_at", FETCHED_AT, keyed=True)


def downgrade() -> None:
    _comment("raw", "fetched_at", FETCHED_AT_BEFORE, keyed=True)
    _comment("core", "_loaded_at", LOADED_AT_BEFORE, keyed=False)
    op.create_table(
        "pushlog_cursor",
        sa.Column(
            "partition_key",
            sa.Text(),
            nullable=False,
            comment="Monthly partition (YYYY-MM-01, PUSHLOG_TIMEZONE).",
        ),
        sa.Column(
            "high_water",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="Max CreateTime in core.fact_push_log for the month after the last successful pull (the pull's "
            "end when the month had no rows); the next incremental pull starts an overlap before it.",
        ),
        sa.Column("last_pull_kind", sa.Text(), nullable=False, comment="'incremental' or 'full'."),
        sa.Column(
            "last_pulled_from",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="Start of the range the last pull requested (inclusive).",
        ),
        sa.Column(
            "last_pulled_to",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="End of the range the last pull requested (exclusive).",
        ),
        sa.Column(
            "last_pull_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="When the last successful pull started (its fetched_at).",
        ),
        sa.Column(
            "last_full_pull_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the last complete (full) pull of the month started.",
        ),
        sa.Column(
            "final_pull_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="When the month, already closed, had its complete final pull; NULL while it has not.",
        ),
        sa.PrimaryKeyConstraint("partition_key", name=op.f("pk_pushlog_cursor")),
        schema="raw",
        comment="Pipeline state of core/fact_push_log per monthly partition, written in the load's transaction: a "
        "failed run never advances it.",
    )
    op.execute("ALTER TABLE raw.pushlog_cursor OWNER TO loader")
    op.drop_table("pull_log", schema="raw")
