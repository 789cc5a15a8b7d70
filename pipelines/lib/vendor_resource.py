"""What every vendor's Dagster resource shares: the HTTP settings, the share of a window one
pull may mark gone, and the one naming rule that binds it to the environment.

The rule (README.md, "Configuration"): a field ``f`` of source ``s``'s resource is
the variable ``S_F`` (``<SOURCE>_BASE_URL``, ``<SOURCE>_RATE_PER_S``). A field
without a default, or named in ``SECRETS``, is bound through ``EnvVar``: Dagster resolves
it at run time and never shows its value. Any other field keeps its default unless its
variable is set.
"""

from __future__ import annotations

import math
import os
import ssl
from datetime import timedelta
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

import httpx
from dagster import ConfigurableResource, EnvVar
from pydantic import Field, ValidationError

from pipelines.lib import refresh
from pipelines.lib.http import HttpClient
from pipelines.lib.loading import DEFAULT_MAX_GONE_SHARE
from pipelines.lib.settings import SettingError


def overlap_field(default: float, why: str) -> Any:
    """The ``overlap_minutes`` field of a source whose open window refreshes incrementally
    (``<SOURCE>_OVERLAP_MINUTES``): ``why`` says what late arrival its default covers."""
    return Field(
        default=default,
        ge=0,
        allow_inf_nan=False,
        description=f"<SOURCE>_OVERLAP_MINUTES: how far before the high-water mark a refresh of the open "
        f"window starts, in minutes (default {default:g}: {why})",
    )


class VendorResource(ConfigurableResource):
    """A vendor API's settings; subclasses add the vendor's own fields and its ``client()``."""

    SOURCE: ClassVar[str]  # the variables' prefix (lower case), the group's and the pool's name
    VENDOR: ClassVar[str]  # the product's name: how errors name the vendor
    SECRETS: ClassVar[frozenset[str]] = frozenset()

    base_url: str = Field(
        description="<SOURCE>_BASE_URL: scheme, host, port and any path prefix in front of the vendor's "
        "documented paths (README: Configuration)"
    )
    rate_per_s: float = Field(
        default=20.0, description="Client-side request rate limit (<SOURCE>_RATE_PER_S)"
    )
    concurrency: int = Field(default=4, ge=1, description="Requests in flight at once (<SOURCE>_CONCURRENCY)")
    max_gone_share: float = Field(
        default=DEFAULT_MAX_GONE_SHARE,
        ge=0.0,
        le=1.0,
        description="<SOURCE>_MAX_GONE_SHARE: the largest share of a window's rows one complete pull may mark gone",
    )
    timeout_s: float = Field(
        default=30.0, description="Seconds to connect, send or read (<SOURCE>_TIMEOUT_S)"
    )
    max_retries: int = Field(default=5, description="Retries of a transient failure (<SOURCE>_MAX_RETRIES)")
    backoff_base_s: float = Field(default=0.5, description="First retry waits up to this, doubling each time")
    # TLS is always verified (there is no switch to turn it off); a vendor reached with a
    # private certificate (an on-premises server at https://ip:port) is trusted through its own CA.
    ca_bundle: str = Field(
        default="",
        description="<SOURCE>_CA_BUNDLE: a PEM file of the CA certificates trusted for this vendor's "
        "HTTPS, instead of the system's",
    )

    @classmethod
    def variable(cls, field: str) -> str:
        return f"{cls.SOURCE.upper()}_{field.upper()}"

    @classmethod
    def from_env(cls) -> Self:
        """The resource as the environment sets it (read when called, so a test's applies)."""
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            var = cls.variable(name)
            if info.is_required() or name in cls.SECRETS:
                values[name] = EnvVar(var)
            elif os.environ.get(var):
                values[name] = os.environ[var]
        try:
            return cls(**values)
        except ValidationError as error:
            bad = ", ".join(
                f"{cls.variable(str(e['loc'][0]))}: {e['msg']}" for e in error.errors() if e["loc"]
            )
            raise SettingError(f"{cls.VENDOR}: {bad}") from None

    def duration(self, name: str, unit: str = "minutes") -> timedelta:
        """A field counting ``unit`` as a duration; not a number, or negative, fails naming its variable."""
        value = getattr(self, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise SettingError(f"{self.variable(name)}={value!r} is not a number of {unit} (0 or more)")
        return timedelta(**{unit: value})

    def incremental(self) -> refresh.Incremental:
        """How this source's open window refreshes from its high-water mark."""
        return refresh.Incremental(self.duration("overlap_minutes"))

    def require(self, *names: str) -> None:
        """Fail, naming the variable, where a required setting is empty."""
        for name in names:
            if not str(getattr(self, name) or "").strip():
                raise SettingError(f"{self.variable(name)} is not set")

    def checked_base_url(self, base_url: str) -> str:
        """``base_url`` if it carries no credentials; one that does is refused, not
        stripped: they belong in the source's credential variables, never in a URL that
        errors, logs and the UI may show."""
        parts = urlsplit(base_url)
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise SettingError(
                f"{self.variable('base_url')} carries credentials (user:password@host); refused. Give the "
                f"URL without them: {self.VENDOR} signs requests with its own credential variables."
            )
        return base_url

    def ssl_context(self) -> ssl.SSLContext | bool:
        """Verification on (the system's CAs), or trusting the CAs of ``ca_bundle`` instead."""
        if not self.ca_bundle.strip():
            return True
        try:
            return ssl.create_default_context(cafile=self.ca_bundle.strip())
        except (OSError, ssl.SSLError) as error:
            raise SettingError(
                f"{self.variable('ca_bundle')}: cannot read CA certificates from {self.ca_bundle.strip()!r} "
                f"({type(error).__name__}: {error.strerror if isinstance(error, OSError) else error})"
            ) from None

    def http(
        self, auth: httpx.Auth, transport: httpx.AsyncBaseTransport | None = None, **kw: Any
    ) -> HttpClient:
        """The vendor's HTTP client with this resource's limits, timeouts, retries and TLS trust."""
        return HttpClient(
            self.VENDOR,
            self.checked_base_url(self.base_url),
            auth=auth,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s,
            rate_per_s=self.rate_per_s or None,
            burst=kw.pop("burst", self.concurrency),
            concurrency=self.concurrency,
            transport=transport,
            verify=self.ssl_context(),
            tls_hint=f"Set {self.variable('ca_bundle')} to the CA certificate (PEM) that signed it.",
            **kw,
        )
