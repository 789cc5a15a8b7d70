"""Alembic environment: the pipeline hands in a connection (already holding the migration
lock); the command line uses WAREHOUSE_URL (or the embedded warehouse)."""

from alembic import context
from sqlalchemy import create_engine

from models import metadata
from models.base import SCHEMAS

config = context.config


def include_name(name, type_, parent_names):  # noqa: ANN001
    # Only our schemas: alembic_version and anything else in public is not ours to diff.
    if type_ == "schema":
        return name in SCHEMAS
    return True


def _configure(connection) -> None:  # noqa: ANN001
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_schemas=True,
        include_name=include_name,
        compare_type=True,
        version_table_schema="public",
    )


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from pipelines.lib.warehouse import resolve_url, sqlalchemy_url

    engine = create_engine(sqlalchemy_url(resolve_url()))
    with engine.begin() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


run()
