"""Tiny jobs in the CRM vendor's pool, for the run-monitoring and crash-retry tests: one holds
the pool's slot until its worker is killed, the next needs the same slot, and one waits for a
file (its first run is killed while it waits; its retry finds the file and succeeds).

``defs`` makes this module a code location of its own, the one the crash-retry test's
``dagster-daemon`` loads: no schedules or sensors to start runs behind a test's back."""

import time
from pathlib import Path

from dagster import Config, Definitions, in_process_executor, job, op


@op(pool="crm")
def hold_crm_slot() -> None:
    time.sleep(600)  # killed long before this returns


@op(pool="crm")
def use_crm_slot() -> int:
    return 1


class FileToWaitFor(Config):
    path: str
    # Bounded, so a test that never writes the file fails instead of leaving a worker behind.
    timeout_s: float = 300.0


@op(pool="crm")
def wait_for_file(config: FileToWaitFor) -> None:
    deadline = time.monotonic() + config.timeout_s
    while not Path(config.path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the file to wait for never appeared")
        time.sleep(0.1)


@job(executor_def=in_process_executor)
def holds_the_crm_pool() -> None:
    hold_crm_slot()


@job(executor_def=in_process_executor)
def needs_the_crm_pool() -> None:
    use_crm_slot()


@job(executor_def=in_process_executor)
def waits_for_a_file() -> None:
    wait_for_file()


defs = Definitions(jobs=[holds_the_crm_pool, needs_the_crm_pool, waits_for_a_file])
