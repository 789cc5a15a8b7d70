"""Migrations: the schema comes only from them, matches the models, and is safe to apply
from several processes at once."""

import threading
import uuid

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from models import metadata
from models.base import SCHEMAS
from pipelines.lib import warehouse
from tests.conftest import _with_db


def test_migrations_match_the_models(warehouse_url: str) -> None:
    engine = create_engine(warehouse.sqlalchemy_url(warehouse_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, parents: type_ != "schema" or name in SCHEMAS,
                "compare_type": True,
            },
        )
        diff = compare_metadata(context, metadata)
        # Alembic's comparison ignores an index's access method: compare it here.
        methods = dict(
            conn.exec_driver_sql(
                "SELECT n.nspname || '.' || c.relname, am.amname FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_am am ON am.oid = c.relam WHERE n.nspname IN ('raw', 'core', 'mart')"
            ).all()
        )
    engine.dispose()
    assert diff == []
    declared = {
        f"{table.schema}.{index.name}": index.dialect_options["postgresql"]["using"] or "btree"
        for table in metadata.tables.values()
        for index in table.indexes
    }
    assert {name: methods.get(name) for name in declared} == declared


def test_every_table_and_column_has_a_comment(db: psycopg.Connection) -> None:
    missing = db.execute(
        """
        SELECT c.table_schema || '.' || c.table_name || '.' || c.column_name
        FROM information_schema.columns c
        JOIN pg_class t ON t.relname = c.table_name
        JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = c.table_schema
        WHERE c.table_schema IN ('raw', 'core') AND t.relkind = 'r'
          AND col_description(t.oid, c.ordinal_position) IS NULL
        UNION ALL
        SELECT n.nspname || '.' || t.relname FROM pg_class t JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname IN ('raw', 'core') AND t.relkind = 'r' AND obj_description(t.oid) IS NULL
        """
    ).fetchall()
    assert missing == []


def test_concurrent_first_migrations_are_safe(pg_admin_url: str) -> None:
    name = f"ccw_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_admin_url, name)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            # Separate processes in production; here, bypass the per-process memo.
            warehouse._migrated.discard(url)
            warehouse.migrate(url)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM core.fact_crm_call").fetchone()[0] == 0
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_warehouse_behind_the_heads_is_upgraded(pg_admin_url: str) -> None:
    """The quick "already at the heads" test reads the heads the way Alembic does, and does
    not skip a warehouse one migration behind."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(warehouse.MIGRATIONS_DIR))
    heads = frozenset(ScriptDirectory.from_config(cfg).get_heads())
    assert warehouse._script_heads() == heads
    (head,) = heads
    previous = ScriptDirectory.from_config(cfg).get_revision(head).down_revision
    name = f"ccw_behind_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_db(pg_admin_url, name)
    try:
        engine = create_engine(warehouse.sqlalchemy_url(url))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, previous)
        engine.dispose()
        warehouse._migrated.discard(url)
        warehouse.migrate(url)
        with psycopg.connect(url) as conn:
            versions = {r[0] for r in conn.execute("SELECT version_num FROM public.alembic_version")}
        assert versions == heads
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_malformed_warehouse_url_names_the_variable() -> None:
    try:
        warehouse.resolve_url("mysql://x@y/z")
    except warehouse.WarehouseConfigError as exc:
        assert "WAREHOUSE_URL" in str(exc)
    else:
        raise AssertionError("expected WarehouseConfigError")


def test_redact_hides_the_password() -> None:
    assert warehouse.redact("postgresql://u:s3cr3t@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert warehouse.redact("postgresql://u:p%40ss@h/d") == "postgresql://u:***@h/d"
    # libpq also takes the password as a query parameter
    assert warehouse.redact("postgresql://u@h/d?sslmode=require&password=s3cr3t") == (
        "postgresql://u@h/d?sslmode=require&password=***"
    )
    assert warehouse.redact("postgresql://h/d") == "postgresql://h/d"


def test_guarded_casts_give_null_instead_of_failing(db: psycopg.Connection) -> None:
    row = db.execute(
        """SELECT core.try_smallint('40000'), core.try_smallint('"12"'), core.try_int('"0x1"'),
                  core.try_bigint('12.5'), core.try_local_timestamp('"2026-13-01 00:00:00"', 'Asia/Shanghai'),
                  core.try_local_timestamp('"2026-11-20 08:00:00"', 'Asia/Shanghai')"""
    ).fetchone()
    assert row[:5] == (None, 12, None, None, None)
    assert row[5].isoformat() == "2026-11-20T00:00:00+00:00"
