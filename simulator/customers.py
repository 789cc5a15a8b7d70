"""Customers who reach the call center through more than one channel: the demo's answer to
"who called through both the CRM and the app?".

Real CRM numbers and TRTC user ids never meet by chance, so both simulators draw a share of
their customers from these fixed lists:

- ``RETURNING_NUMBERS``: mobile numbers the CRM serves as ``customerNumber`` now and then, and
  that are TRTC user ids too (written as ``+86...``, ``0086...`` or bare: apps store numbers in
  any form, the warehouse normalizes them).
- ``APP_USERS``: TRTC user ids that are not numbers, with the phone number the operator knows
  for each (the demo identity map, ``pipelines/defs/mart/demo_customer_identity.csv``); the CRM
  serves those numbers too.

Fixed, not per seed: the demo's identity file is a static file.
"""

from __future__ import annotations

import hashlib

_PREFIXES = ("138", "139", "150", "186", "177")


def _number(label: str, k: int) -> str:
    n = int.from_bytes(hashlib.blake2b(f"{label}:{k}".encode(), digest_size=8).digest(), "big")
    return _PREFIXES[n % len(_PREFIXES)] + f"{(n >> 8) % 100_000_000:08d}"


RETURNING_NUMBERS: tuple[str, ...] = tuple(_number("returning", k) for k in range(40))
APP_USERS: tuple[tuple[str, str], ...] = tuple(
    (f"u_{hashlib.blake2b(f'app:{k}'.encode(), digest_size=4).hexdigest()}", _number("app", k))
    for k in range(30)
)
# every number the CRM may serve for a returning customer
CRM_NUMBERS: tuple[str, ...] = RETURNING_NUMBERS + tuple(phone for _, phone in APP_USERS)


def trtc_user_ids() -> tuple[str, ...]:
    """The returning customers as TRTC user ids: numbers in three written forms, and app ids."""
    forms = ("+86{}", "0086{}", "{}")
    numbers = tuple(forms[k % 3].format(n) for k, n in enumerate(RETURNING_NUMBERS))
    return numbers + tuple(app_id for app_id, _ in APP_USERS)
