"""Which executor runs a job's steps, chosen by ``DAGSTER_EXECUTOR`` when the code loads.

- ``in_process`` (default): every step in the run's own worker. A job's steps share their
  vendor's pool, so they run one after another anyway; a process per step would only add
  the code's import time (seconds on a busy machine) to every step.
- ``multiprocess``: a process per step, for a job whose steps can overlap.
- ``celery``: steps become Celery tasks on a broker, run by ``dagster-celery`` workers on
  other machines (the ``celery`` extra; deploy/README.md). Settings from the environment,
  so no URL or password appears in a run's config: ``CELERY_BROKER_URL`` (required, e.g.
  ``pyamqp://guest:guest@rabbitmq:5672//`` or ``redis://redis:6379/0``),
  ``CELERY_BACKEND_URL`` (``rpc://`` by default, or ``redis://...``) and ``CELERY_QUEUE``
  (the queue the workers listen on, ``dagster`` by default).
"""

from __future__ import annotations

import os

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

EXECUTORS = ("in_process", "multiprocess", "celery")


class ExecutorSettingError(ValueError):
    pass


def celery_config() -> dict:
    if not os.environ.get("CELERY_BROKER_URL"):
        raise ExecutorSettingError("DAGSTER_EXECUTOR=celery needs CELERY_BROKER_URL (the broker's URL)")
    return {
        "broker": {"env": "CELERY_BROKER_URL"},
        "backend": {"env": "CELERY_BACKEND_URL"} if os.environ.get("CELERY_BACKEND_URL") else "rpc://",
        "config_source": {"task_default_queue": os.environ.get("CELERY_QUEUE") or "dagster"},
    }


def executor_from_env() -> ExecutorDefinition:
    kind = os.environ.get("DAGSTER_EXECUTOR") or "in_process"
    if kind == "in_process":
        return in_process_executor
    if kind == "multiprocess":
        return multiprocess_executor
    if kind == "celery":
        try:
            from dagster_celery import celery_executor
        except ImportError:
            raise ExecutorSettingError(
                "DAGSTER_EXECUTOR=celery needs the celery extra: pip install -e '.[celery]'"
            ) from None
        return celery_executor.configured(celery_config())
    raise ExecutorSettingError(f"DAGSTER_EXECUTOR={kind!r} is not one of {', '.join(EXECUTORS)}")
