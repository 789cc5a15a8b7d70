"""SQLAlchemy table definitions of the warehouse: the schema's one source of truth.

Migrations in ``sql/migrations`` are generated from this metadata (``alembic revision
--autogenerate``); a test fails when the two disagree.
"""

from models.base import metadata
from models import crm, raw  # noqa: F401  (register tables on the metadata)

__all__ = ["metadata"]
