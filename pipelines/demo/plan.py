"""What the demo's first load runs, read from the loaded definitions: no source is named here.

A *source* is a vendor resource's key, which is also its assets' group. For each
source, its time-partitioned jobs get the open partition and the one before it (what the
schedules refresh), and each of its unpartitioned jobs that materializes an asset runs once
(the snapshots). ``<SOURCE>_START_DATE`` is set to the first partition loaded, so the UI shows
this warehouse's real coverage rather than months of partitions nobody loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dagster import Definitions, TimeWindowPartitionsDefinition

from pipelines.lib import settings
from pipelines.lib.vendor_resource import VendorResource

# The open partition and the one before it: what every source's schedule refreshes.
RECENT_PARTITIONS = 2


@dataclass(frozen=True)
class PartitionedLoad:
    source: str
    job: str
    keys: list[str]


@dataclass(frozen=True)
class FirstLoad:
    partitioned: list[PartitionedLoad] = field(default_factory=list)
    snapshot_jobs: list[str] = field(default_factory=list)

    def start_dates(self) -> dict[str, str]:
        """``<SOURCE>_START_DATE`` per source: the earliest partition its jobs load."""
        first: dict[str, str] = {}
        for load in self.partitioned:
            variable = settings.start_date_variable(load.source)
            first[variable] = min(first.get(variable, load.keys[0]), load.keys[0])
        return first


def sources(defs: Definitions) -> set[str]:
    """The sources: every vendor resource's key."""
    return {key for key, resource in (defs.resources or {}).items() if isinstance(resource, VendorResource)}


def first_load(defs: Definitions, now: datetime) -> FirstLoad:
    """The jobs and partitions a first load runs at ``now``, per source, sorted by job name."""
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    vendors = sources(defs)
    plan = FirstLoad()
    for job in sorted(repository.get_all_jobs(), key=lambda j: j.name):
        keys = job.asset_layer.executable_asset_keys if job.asset_layer else set()
        groups = {graph.get(key).group_name for key in keys}
        if job.name.startswith("__") or not keys or len(groups) != 1 or not groups <= vendors:
            continue
        (source,) = groups
        partitions = job.partitions_def
        if partitions is None:
            plan.snapshot_jobs.append(job.name)
        elif isinstance(partitions, TimeWindowPartitionsDefinition):
            recent = partitions.get_partition_keys(current_time=now)[-RECENT_PARTITIONS:]
            if recent:  # none before the source's first partition
                plan.partitioned.append(PartitionedLoad(source, job.name, recent))
    return plan
