"""The typed errors of a vendor call. Each names the vendor, the endpoint (its path only,
never the query string: some vendors put credentials there), the code and its meaning.

``transient`` is the one way to say an error is worth another try: the retry policy reads
it and nothing else. The HTTP layer sets it for a timeout, a dropped connection, 429, 5xx and
a body that is not JSON; a vendor's ``check`` sets it for an error envelope that means "try
again later" (throttling, busy)."""

from __future__ import annotations

import ssl

import httpx


class VendorError(Exception):
    """A vendor answered with an error (HTTP status or an error envelope), or not at all."""

    def __init__(
        self,
        vendor: str,
        endpoint: str,
        code: object,
        meaning: str,
        hint: str = "",
        *,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.vendor, self.endpoint, self.code, self.meaning, self.hint = vendor, endpoint, code, meaning, hint
        self.transient = transient  # worth another try
        self.retry_after = retry_after  # seconds the vendor asked to wait first, if it said
        text = f"{vendor} {endpoint}: error {code}: {meaning}"
        super().__init__(f"{text}. {hint}" if hint else text)


class VendorAuthError(VendorError):
    """Credentials rejected: the message says which variables to check."""


class VendorHTTPError(VendorError):
    """An HTTP status, a timeout or a dropped connection, that retries did not cure."""


class VendorResponseError(VendorError):
    """A body that is not the JSON the vendor documents (truncated, HTML, drifted)."""


class VendorTLSError(VendorError):
    """The vendor's certificate failed verification: retrying cannot cure it."""


def certificate_problem(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a connection error, if that is what it is."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def unanswered(vendor: str, endpoint: str, exc: httpx.TransportError, tls_hint: str) -> VendorError:
    """The error for a request that got no answer: a timeout or a dropped connection is
    transient; a certificate that failed verification is not (it will not change), and
    ``tls_hint`` names the setting to fix."""
    if isinstance(exc, httpx.TimeoutException):
        meaning = f"no answer in time ({type(exc).__name__})"
        return VendorHTTPError(vendor, endpoint, "timeout", meaning, transient=True)
    problem = certificate_problem(exc) if isinstance(exc, httpx.ConnectError) else None
    if problem is not None:
        reason = problem.verify_message or problem.reason
        meaning = f"the server's TLS certificate failed verification ({reason})"
        return VendorTLSError(vendor, endpoint, "certificate", meaning, tls_hint)
    return VendorHTTPError(vendor, endpoint, "connection", f"{type(exc).__name__}: {exc}", transient=True)
