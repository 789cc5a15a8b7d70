"""The code location: every definition under ``pipelines/defs/`` (each source's folder, the
mart, the operational sensors), loaded the way ``dg`` projects are (``load_from_defs_folder``;
``[tool.dg]`` in pyproject.toml), plus the shared warehouse resource and the executor the
deployment chose.

Adding a vendor is adding its folder under ``pipelines/defs/sources/``: nothing here names one.
"""

from pathlib import Path

from dagster import Definitions, load_from_defs_folder

from pipelines.defs.ops.freshness import freshness_definitions
from pipelines.deploy.executors import executor_from_env
from pipelines.lib.warehouse import WarehouseResource


def _load() -> Definitions:
    # One Definitions object at module scope: Dagster refuses a module with two.
    folder = load_from_defs_folder(path_within_project=Path(__file__).parent)
    return Definitions.merge(
        folder,
        # One named job for every source's per-partition freshness checks.
        freshness_definitions(folder.asset_checks or []),
        Definitions(
            resources={"warehouse": WarehouseResource.from_env()},
            # DAGSTER_EXECUTOR: in_process (default), multiprocess or celery (pipelines/deploy/executors.py).
            executor=executor_from_env(),
        ),
    )


defs = _load()


def build_resources() -> dict[str, object]:
    """Every resource, bound to the environment as it is when called (a test's settings apply).

    Each resource class reads its own variables (``from_env``)."""
    return {key: type(resource).from_env() for key, resource in (defs.resources or {}).items()}
