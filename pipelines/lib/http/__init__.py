"""The one HTTP layer every vendor client uses.

Timeouts; retries (``retry``: tenacity, exponential backoff with full jitter, honouring
``Retry-After``) of the errors marked ``transient`` (``errors``: connection errors, 429, 5xx,
unparsable bodies, and what a vendor's check says means "try again later"); a client-side
rate limiter (``rate_limit``); bounded concurrency (``bounded``); typed errors that name the
vendor, the endpoint, the code and its meaning; counters for the Dagster UI (``stats``).

Errors name the endpoint path only, never the query string: some vendors put credentials
(a signature, a UserSig) there.
"""

from pipelines.lib.http.bounded import bounded
from pipelines.lib.http.client import Check, HttpClient, Page, Reply
from pipelines.lib.http.errors import (
    VendorAuthError,
    VendorError,
    VendorHTTPError,
    VendorResponseError,
    VendorTLSError,
)
from pipelines.lib.http.rate_limit import RateLimiter
from pipelines.lib.http.retry import RetryPolicy, retry_after_seconds
from pipelines.lib.http.stats import HttpStats

__all__ = [
    "Check",
    "HttpClient",
    "HttpStats",
    "Page",
    "RateLimiter",
    "Reply",
    "RetryPolicy",
    "VendorAuthError",
    "VendorError",
    "VendorHTTPError",
    "VendorResponseError",
    "VendorTLSError",
    "bounded",
    "retry_after_seconds",
]
