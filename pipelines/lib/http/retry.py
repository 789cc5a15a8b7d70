"""The retry policy: a ``VendorError`` marked ``transient`` is tried again, up to
``max_retries`` times, after an exponential backoff with full jitter, or after the wait the
vendor asked for (``Retry-After``). The last attempt's own error is raised, naming the
vendor, the endpoint and the cause."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from pipelines.lib.http.errors import VendorError
from pipelines.lib.http.stats import HttpStats


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is worth another try: the one question the policy asks."""
    return isinstance(error, VendorError) and error.transient


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The wait a ``Retry-After`` header asks for (seconds or an HTTP date), if it is there."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s * 4)
        # Full jitter: spreads the retries of concurrent requests apart.
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    def retrying(self, stats: HttpStats) -> AsyncRetrying:
        """A tenacity loop for one request, counting its retries and waits in ``stats``."""

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            seconds = self.backoff(state.attempt_number - 1, getattr(error, "retry_after", None))
            stats.retry_wait_s += seconds
            return seconds

        def count(state: RetryCallState) -> None:
            stats.retries += 1

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(is_transient),
            before_sleep=count,
            reraise=True,  # the last attempt's own error, naming vendor, endpoint and cause
        )
