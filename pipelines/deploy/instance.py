"""The Dagster instance's configuration: the file every deployment copies into its
``DAGSTER_HOME``, and the storage URL it reads (``DAGSTER_PG_URL``)."""

from __future__ import annotations

from pathlib import Path

# dagster.yaml beside this module: storage, run queue, pools, run retries and monitoring.
INSTANCE_CONFIG = Path(__file__).with_name("dagster.yaml")


def dagster_pg_url(url: str) -> str:
    """``DAGSTER_PG_URL`` for a ``postgresql://`` URL: dagster-postgres must run on psycopg2.

    SQLAlchemy 2.1 picks psycopg 3 for a bare ``postgresql://``, whose server-side parameters
    break dagster-postgres's ``NOTIFY run_events, %(notify_id)s``.
    """
    scheme, rest = url.split("://", 1)
    return f"postgresql+psycopg2://{rest}" if scheme in ("postgresql", "postgres") else url
