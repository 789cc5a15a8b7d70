"""Which executor runs a job's steps, chosen by ``DAGSTER_EXECUTOR`` when the code loads.

- ``in_process`` (default): every step in the run's own worker. A job's steps share their
  vendor's pool, so they run one after another anyway; a process per step would only add
  the code's import time (seconds on a busy machine) to every step.
- ``multiprocess``: a process per step, for a job whose steps can overlap.
- ``celery``: steps become Celery tasks on a broker, run by ``dagster-celery`` workers on
  other machines (the ``celery`` extra; pipelines/deploy/README.md). Settings from the environment,
  so no URL or password appears in a run's config: ``CELERY_BROKER_URL`` (required, e.g.
  ``pyamqp://guest:guest@rabbitmq:5672//`` or ``redis://redis:6379/0``),
  ``CELERY_BACKEND_URL`` (``rpc://`` by default, or ``redis://...``), ``CELERY_QUEUE``
  (the queue the workers listen on, ``dagster`` by default) and
  ``CELERY_BROKER_TRANSPORT_OPTIONS`` (optional: a JSON object, Celery's
  ``broker_transport_options``, laid over dagster-celery's defaults; e.g. the folders of
  kombu's ``filesystem://`` transport, which the tests use as a broker that needs no
  server). The options go into the executor's definition as they are, while Dagster reads
  ``CELERY_BROKER_URL`` only at run time: a password belongs in the URL, not in the options.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

EXECUTORS = ("in_process", "multiprocess", "celery")


class ExecutorSettingError(ValueError):
    pass


def _transport_options() -> dict[str, Any] | None:
    raw = os.environ.get("CELERY_BROKER_TRANSPORT_OPTIONS")
    if not raw:
        return None
    try:
        options = json.loads(raw)
    except ValueError:
        options = None
    if not isinstance(options, dict):
        # The value itself stays out of the message: it may name hosts or credentials.
        raise ExecutorSettingError("CELERY_BROKER_TRANSPORT_OPTIONS must be a JSON object")
    return options


def celery_config(default_transport_options: Mapping[str, Any] | None = None) -> dict:
    """The Celery executor's config from the environment. ``default_transport_options`` are
    the ones CELERY_BROKER_TRANSPORT_OPTIONS is laid over (Celery would otherwise replace
    dagster-celery's connection-retry defaults with it rather than add to them)."""
    if not os.environ.get("CELERY_BROKER_URL"):
        raise ExecutorSettingError("DAGSTER_EXECUTOR=celery needs CELERY_BROKER_URL (the broker's URL)")
    config_source: dict[str, Any] = {"task_default_queue": os.environ.get("CELERY_QUEUE") or "dagster"}
    options = _transport_options()
    if options is not None:
        config_source["broker_transport_options"] = {**(default_transport_options or {}), **options}
    return {
        "broker": {"env": "CELERY_BROKER_URL"},
        "backend": {"env": "CELERY_BACKEND_URL"} if os.environ.get("CELERY_BACKEND_URL") else "rpc://",
        "config_source": config_source,
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
            from dagster_celery.defaults import broker_transport_options
        except ImportError:
            raise ExecutorSettingError(
                "DAGSTER_EXECUTOR=celery needs the celery extra: pip install -e '.[celery]'"
            ) from None
        return celery_executor.configured(celery_config(broker_transport_options))
    raise ExecutorSettingError(f"DAGSTER_EXECUTOR={kind!r} is not one of {', '.join(EXECUTORS)}")
