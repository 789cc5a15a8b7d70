"""Records that are valid JSON but that PostgreSQL's ``jsonb`` cannot take.

A vendor's page is valid JSON, yet PostgreSQL refuses three things in it: a ``\\u0000`` inside
a string (its text type holds no NUL), an unpaired UTF-16 surrogate (``\\ud800``), and a
number beyond what ``numeric`` stores (``1e999999``). One such record fails the statement
that lands its whole batch. The loader's fallback for such a batch hands its pages here
(``split_batch``): the records PostgreSQL can take go on as a cleaned page, each other record becomes a
*made-safe copy* (every offending value replaced by its JSON text, as a string) with a
reason naming the field, never the value, so no customer data reaches a log.

This runs only for a batch PostgreSQL refused, so plain Python is fast enough.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# PostgreSQL's numeric: up to 131072 digits before the decimal point, 16383 after.
_MAX_INT_DIGITS = 131_072
_MAX_FRACTION_DIGITS = 16_383


class UnparsablePage(ValueError):
    """A page body that is not JSON at all (the client should have refused it)."""


@dataclass(frozen=True)
class Refused:
    """One record PostgreSQL cannot take: its made-safe copy (JSON text) and why."""

    record: str
    reason: str


class _Constant(str):
    """``NaN``/``Infinity`` as Python's parser accepts them; JSON has no such tokens."""


class _Number(Decimal):
    """A JSON number, exact, remembering how the vendor wrote it."""

    text: str

    def __new__(cls, text: str) -> _Number:
        number = super().__new__(cls, text)
        number.text = text
        return number


def _problem(value: Any) -> str | None:
    """Why PostgreSQL cannot store this scalar, or None."""
    if isinstance(value, _Constant):
        return "a NaN or Infinity literal, which JSON does not have"
    if isinstance(value, str):
        if "\x00" in value:
            return "a \\u0000 character, which PostgreSQL text cannot hold"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "an unpaired UTF-16 surrogate"
        return None
    if isinstance(value, Decimal) and value.is_finite() and value:
        sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        if len(digits) + exponent > _MAX_INT_DIGITS or -exponent > _MAX_FRACTION_DIGITS:
            return "a number beyond the range PostgreSQL's numeric can store"
    return None


def _escaped(value: Any) -> str:
    """The offending value as JSON text, ASCII-escaped (so it holds no NUL or surrogate)."""
    if isinstance(value, _Constant):
        return str(value)
    if isinstance(value, _Number):
        return value.text
    return json.dumps(value, ensure_ascii=True)


def _walk(value: Any, path: str, found: list[str]) -> Any:
    """A copy of ``value`` with offending scalars (and keys) replaced by their escaped text;
    each offence's path and kind are appended to ``found``."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            key_problem = _problem(key)
            safe_key = _escaped(key)[1:-1] if key_problem else key
            if key_problem:
                found.append(f"a field name at {path or 'the top'}: {key_problem}")
            out[safe_key] = _walk(item, f"{path}.{safe_key}" if path else safe_key, found)
        return out
    if isinstance(value, list):
        return [_walk(item, f"{path}[{i}]", found) for i, item in enumerate(value)]
    problem = _problem(value)
    if problem is None:
        return value
    found.append(f"field '{path}' holds {problem}")
    return _escaped(value)


def dumps(value: Any) -> str:
    """JSON text of a parsed value, numbers written as the vendor wrote them."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, _Number):
        return value.text
    return json.dumps(value, ensure_ascii=False)


def split_page(body: bytes, records_path: Sequence[str]) -> tuple[bytes, list[Refused]]:
    """Split a page into a cleaned page (the records PostgreSQL can take, at the same
    ``records_path``; nothing else of the envelope is read from it) and the records it
    cannot take."""
    try:
        doc = json.loads(
            body.decode("utf-8"),
            parse_float=_Number,
            parse_int=_Number,
            parse_constant=_Constant,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnparsablePage(f"the page is not UTF-8 JSON ({type(exc).__name__})") from None
    records: Any = doc
    for step in records_path:
        records = records.get(step) if isinstance(records, dict) else None
    if not isinstance(records, list):
        return body, []
    kept: list[Any] = []
    refused: list[Refused] = []
    for record in records:
        found: list[str] = []
        safe = _walk(record, "", found)
        if found:
            reason = "the record cannot be stored in PostgreSQL as sent: " + "; ".join(found)
            refused.append(Refused(record=dumps(safe), reason=reason))
        else:
            kept.append(record)
    cleaned: Any = kept
    for step in reversed(records_path):
        cleaned = {step: cleaned}
    return dumps(cleaned).encode("utf-8"), refused


def split_batch(pages: Sequence[bytes], records_path: Sequence[str]) -> tuple[list[bytes], list[Refused]]:
    """``split_page`` over a batch's pages: the cleaned pages and every refused record. A page
    that is not JSON at all raises ``UnparsablePage`` naming its number in the batch."""
    cleaned: list[bytes] = []
    refused: list[Refused] = []
    for number, body in enumerate(pages, 1):
        try:
            page, bad = split_page(body, records_path)
        except UnparsablePage as problem:
            raise UnparsablePage(f"page {number}: {problem}") from None
        cleaned.append(page)
        refused.extend(bad)
    return cleaned, refused
