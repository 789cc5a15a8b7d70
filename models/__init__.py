"""SQLAlchemy table definitions of the warehouse: the schema's one source of truth.

Migrations in ``sql/migrations`` are generated from this metadata (``alembic revision
--autogenerate``); a test fails when the two disagree.
"""

from models import crm, isales, mart, mart_kpi, pushlog, raw, trtc  # noqa: F401  (register tables on the metadata)
from models.base import metadata

__all__ = ["metadata"]
