"""A client's counters, for the Dagster UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    pages: int = 0
    throttled_s: float = 0.0
    retry_wait_s: float = 0.0  # the backoffs decided before retries (a Retry-After honoured)
    statuses: dict[str, int] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "pages": self.pages,
            "rate_limit_wait_s": round(self.throttled_s, 3),
            "retry_wait_s": round(self.retry_wait_s, 3),
        }
