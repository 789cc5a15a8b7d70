"""Running assets the way Dagster does, against the environment the fixtures set."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dagster import AssetsDefinition, DagsterInstance, ExecuteInProcessResult, materialize

from pipelines.definitions import build_resources


def run(
    assets: Sequence[AssetsDefinition],
    partition_key: str | None = None,
    raise_on_error: bool = True,
    instance: DagsterInstance | None = None,
) -> ExecuteInProcessResult:
    return materialize(
        list(assets),
        partition_key=partition_key,
        resources=build_resources(),
        raise_on_error=raise_on_error,
        instance=instance or DagsterInstance.ephemeral(),
    )


def metadata(result: ExecuteInProcessResult, table: str) -> dict[str, Any]:
    """The materialization metadata of one asset (``core/fact_crm_call``)."""
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == table:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise KeyError(table)


def checks(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
