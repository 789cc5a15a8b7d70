"""Pseudonymous customers: the key, and the keyed hash computed inside PostgreSQL.

Outside the demo (any warehouse but the project's embedded one) PII_HASH_KEY is required;
the demo (``python -m pipelines.demo``, ``dagster dev`` on ``.demo/env``) runs on a fixed,
clearly named demo key and the shipped demo identity file.

``customer_key`` = HMAC-SHA256(PII_HASH_KEY, subject), where subject is a phone number in one
form (``core.normalize_phone``) or ``app:<user id>``. The key never reaches the warehouse: the
HMAC is built from PostgreSQL's ``sha256()`` with the key's inner and outer pads as bound
parameters (RFC 2104), so nothing stored, logged or shown in ``pg_stat_activity`` holds it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
from base64 import urlsafe_b64encode
from pathlib import Path

import psycopg
from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from pipelines.lib.warehouse import embedded_dir

KEY_VARIABLE = "PII_HASH_KEY"
IDENTITY_VARIABLE = "CUSTOMER_IDENTITY_FILE"
# Stands in for PII_HASH_KEY only on the embedded demo warehouse; named so nobody mistakes it.
DEMO_KEY = "ccw-demo-pii-hash-key-NOT-A-SECRET"
DEMO_IDENTITY_FILE = Path(__file__).with_name("demo_customer_identity.csv")
_BLOCK = 64  # SHA-256's block size
_KEY_ID_LABEL = b"callcenter-warehouse customer_key id"

# base64url of the first 16 bytes, without padding: 22 characters, never a run of digits
# that could pass for a phone number (hex would be, now and then).
CUSTOMER_KEY_SQL = (
    "translate(encode(substr(sha256(%(opad)s || sha256(%(ipad)s || convert_to({subject}, 'UTF8'))), 1, 16), "
    "'base64'), '+/=', '-_')"
)

log = logging.getLogger(__name__)
_demo_logged = threading.Event()


class PiiConfigError(RuntimeError):
    pass


def pads(key: bytes) -> dict[str, bytes]:
    """The HMAC's inner and outer padded keys, the parameters of CUSTOMER_KEY_SQL."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return {"ipad": bytes(b ^ 0x36 for b in key), "opad": bytes(b ^ 0x5C for b in key)}


def customer_key(key: bytes, subject: str) -> str:
    """What CUSTOMER_KEY_SQL computes, in Python (tests compare the two)."""
    digest = hmac.new(key, subject.encode(), hashlib.sha256).digest()[:16]
    return urlsafe_b64encode(digest).decode().rstrip("=")


def key_id(key: bytes) -> str:
    """Tells keys apart (rows made under another key are recomputed) without revealing one."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def is_embedded_warehouse(conn: psycopg.Connection) -> bool:
    """Whether ``conn`` is to this project's embedded PostgreSQL (the demo), over its socket or
    TCP alike: its data directory is ours. A login that may not read the setting sees no row."""
    row = conn.execute("SELECT setting FROM pg_settings WHERE name = 'data_directory'").fetchone()
    return row is not None and Path(row[0]).resolve() == embedded_dir().resolve()


class CustomersResource(ConfigurableResource):
    """The PII key and the identity map. On the project's embedded (demo) warehouse a fixed demo
    key and the shipped demo identity file stand in for unset variables; on any other warehouse
    PII_HASH_KEY is required."""

    hash_key: str | None = Field(default=None, description="PII_HASH_KEY: the HMAC key of customer_key.")
    identity_file: str | None = Field(
        default=None, description="CUSTOMER_IDENTITY_FILE: CSV app_user_id,phone_number (optional)."
    )
    demo: bool | None = Field(
        default=None,
        description="Whether demo defaults apply; unset: when the warehouse is the embedded one (.warehouse/).",
    )

    @classmethod
    def from_env(cls) -> CustomersResource:
        """The resource as the environment sets it (read when called, so a test's applies)."""
        return cls(
            hash_key=EnvVar(KEY_VARIABLE) if os.environ.get(KEY_VARIABLE) else None,
            identity_file=os.environ.get(IDENTITY_VARIABLE) or None,
        )

    def is_demo(self, conn: psycopg.Connection) -> bool:
        return self.demo if self.demo is not None else is_embedded_warehouse(conn)

    def key(self, demo: bool) -> tuple[bytes, str]:
        """The key's bytes and where it came from (for metadata: never the key)."""
        if self.hash_key:
            return self.hash_key.encode(), KEY_VARIABLE
        if demo:
            if not _demo_logged.is_set():
                _demo_logged.set()
                log.warning(
                    "%s is not set: customer_key uses the fixed DEMO key (embedded demo warehouse only); "
                    "set %s before loading real customers.",
                    KEY_VARIABLE,
                    KEY_VARIABLE,
                )
            return DEMO_KEY.encode(), "demo key"
        raise PiiConfigError(
            f"{KEY_VARIABLE} is not set: it is required on any warehouse but the embedded demo one (the key of "
            "customer_key, the customers' pseudonym; keep it outside the warehouse)"
        )

    def identity_path(self, demo: bool) -> Path | None:
        if self.identity_file:
            path = Path(self.identity_file)
            if not path.is_file():
                raise PiiConfigError(f"{IDENTITY_VARIABLE}={self.identity_file!r} is not a readable file")
            return path
        return DEMO_IDENTITY_FILE if demo else None
