"""The one retry signal: a ``VendorError`` marked ``transient`` is tried again, whoever raised
it (the HTTP layer for a status or a broken body, a vendor's check for a "busy" envelope);
anything else is raised at once. The "vendor" is an httpx mock transport that answers from a
script, one answer per request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from pipelines.lib.http import HttpClient, VendorError, VendorHTTPError, VendorResponseError


def call(
    answers: list[httpx.Response], check: Callable[[object], None] | None = None
) -> tuple[object, HttpClient]:
    """One ``request_json`` against a vendor giving ``answers`` in turn: (its outcome, the client)."""
    script = iter(answers)

    async def go() -> tuple[object, HttpClient]:
        transport = httpx.MockTransport(lambda request: next(script))
        async with HttpClient(
            "vendor", "http://vendor", transport=transport, max_retries=2, backoff_base_s=0
        ) as http:
            try:
                return (await http.request_json("GET", "/r", check=check)).payload, http
            except VendorError as error:
                return error, http

    return asyncio.run(go())


def busy_check(payload: object) -> None:
    if isinstance(payload, dict) and payload.get("code") == "busy":
        raise VendorError("vendor", "/r", "busy", "try again later", transient=True)
    if isinstance(payload, dict) and payload.get("code") == "denied":
        raise VendorError("vendor", "/r", "denied", "not allowed")


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(503),
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200, content=b"<html>"),
        httpx.Response(200, json={"code": "busy"}),
    ],
    ids=["503", "429", "not-json", "busy-envelope"],
)
def test_a_transient_error_is_retried(first: httpx.Response) -> None:
    outcome, http = call([first, httpx.Response(200, json={"code": "ok"})], busy_check)
    assert outcome == {"code": "ok"}
    assert http.stats.retries == 1 and http.stats.requests == 2


def test_retries_stop_at_the_budget_and_raise_the_last_error() -> None:
    outcome, http = call([httpx.Response(503)] * 3)
    assert isinstance(outcome, VendorHTTPError) and outcome.transient and outcome.code == 503
    assert http.stats.requests == 3 and http.stats.retries == 2


def test_an_error_not_marked_transient_is_raised_at_once() -> None:
    outcome, http = call([httpx.Response(200, json={"code": "denied"})], busy_check)
    assert isinstance(outcome, VendorError) and not outcome.transient and outcome.code == "denied"
    outcome, http = call([httpx.Response(404, json={})])
    assert isinstance(outcome, VendorHTTPError) and not outcome.transient
    assert http.stats.requests == 1 and http.stats.retries == 0


def test_an_answer_that_is_not_json_names_its_size_not_its_content() -> None:
    outcome, _ = call([httpx.Response(200, content=b"<html>secret</html>")] * 3)
    assert (
        isinstance(outcome, VendorResponseError)
        and "19 bytes" in str(outcome)
        and "secret" not in str(outcome)
    )
