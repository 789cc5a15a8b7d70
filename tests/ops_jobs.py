"""Two tiny jobs in the CRM vendor's pool, for the run-monitoring test: one holds the pool's
slot until its worker is killed, the next needs the same slot."""

import time

from dagster import in_process_executor, job, op


@op(pool="crm")
def hold_crm_slot() -> None:
    time.sleep(600)  # killed long before this returns


@op(pool="crm")
def use_crm_slot() -> int:
    return 1


@job(executor_def=in_process_executor)
def holds_the_crm_pool() -> None:
    hold_crm_slot()


@job(executor_def=in_process_executor)
def needs_the_crm_pool() -> None:
    use_crm_slot()
