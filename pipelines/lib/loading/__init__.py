"""The one loader every source uses: land pages verbatim in ``raw``, normalize them into
``core``, atomically per partition.

A partition's load (``partition.PartitionLoad``) is one transaction:

1. an advisory lock on (table, partition), so two runs of one partition queue rather than
   race (``lock``);
2. per batch of pages (5k records): one statement (``statement``) receives the page bodies
   (JSON bytes, unparsed) as one binary array parameter, explodes the record arrays, lands
   each record in ``raw.<source>`` (upsert by natural key) and upserts the typed rows into
   every ``core`` target; records the normalizing SELECT cannot type go to ``raw.rejects``
   with the reason. Where the partition held nothing before (a first load, a backfill), the
   batches are plain INSERTs in a savepoint, and the load turns to upserts for good the
   first time a key turns out to be there already (``write_mode``);
3. at the end, when the pull was complete, the window's rows that this pull did not return
   are marked gone (``_gone_at``), limited to the range actually pulled; nothing is ever
   deleted, from ``core`` or ``raw``. A pull that would mark more than ``max_gone_share`` of
   the rows gone (or any row, when it returned nothing) marks none and says so
   (``LoadResult.gone_refused``; ``gone``).

A record PostgreSQL cannot take (a ``\\u0000`` in a string, an unpaired surrogate, a number
beyond ``numeric``) fails its batch's statement; the batch is then split in Python
(``json_safety``, by way of ``fallback``): such records go to ``raw.rejects`` as made-safe
copies with a reason naming the field, and the rest of the batch lands.

Any other exception rolls the whole partition back. The SQL a source supplies is static text
with named parameters; identifiers are composed with ``psycopg.sql``. ``pump`` overlaps the
vendor's pages with the load.
"""

from pipelines.lib.loading.gone import DEFAULT_MAX_GONE_SHARE, GoneRefusal
from pipelines.lib.loading.partition import PartitionLoad
from pipelines.lib.loading.pump import pump
from pipelines.lib.loading.result import LoadError, LoadResult
from pipelines.lib.loading.spec import CoreTarget, SourceSpec, qualified_ident

__all__ = [
    "DEFAULT_MAX_GONE_SHARE",
    "CoreTarget",
    "GoneRefusal",
    "LoadError",
    "LoadResult",
    "PartitionLoad",
    "SourceSpec",
    "pump",
    "qualified_ident",
]
