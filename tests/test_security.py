"""Security (issue 15, item 5): secrets never leave the environment, errors carry neither
customer data nor the warehouse password, TLS is verified (with a per-source CA bundle), and a
base URL carrying credentials is refused.

Each test drives the real path: the simulator over real HTTP(S), Dagster runs, PostgreSQL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import psycopg
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, materialize, serialize_value
from psycopg import sql
from starlette.applications import Starlette

from pipelines.definitions import build_resources, defs
from pipelines.defs.sources.crm.client import sign as crm_sign
from pipelines.defs.sources.trtc.usersig import gen_usersig
from pipelines.lib.settings import SettingError
from pipelines.lib.vendor_resource import VendorResource
from simulator.app import Simulator
from simulator.server import ThreadedServer, free_port
from tests.test_fault_matrix import SOURCES, Source, failure_text
from tests.tls import make_private_ca

RESOURCES: list[type[VendorResource]] = sorted(
    (type(r) for r in (defs.resources or {}).values() if isinstance(r, VendorResource)),
    key=lambda r: r.SOURCE,
)


def tuned(monkeypatch: pytest.MonkeyPatch, source: str) -> None:
    for name, value in {"MAX_RETRIES": "1", "BACKOFF_BASE_S": "0.01", "RATE_PER_S": "0"}.items():
        monkeypatch.setenv(f"{source.upper()}_{name}", value)


def run(source: Source, instance: DagsterInstance) -> ExecuteInProcessResult:
    return materialize(
        source.assets,
        partition_key=source.partition,
        resources=build_resources(),
        raise_on_error=False,
        instance=instance,
    )


# ---- (a) no secret, nor anything derived from one, anywhere a run leaves text ---------------------


class TappedSimulator(Simulator):
    """The simulator, keeping every credential the client put on the wire: the query
    parameters and headers that carry a signature or a token."""

    WIRE_CREDENTIALS = {"sign", "usersig", "authorization", "x-acs-signature-nonce"}

    def build(self) -> Starlette:
        app = super().build()
        self.seen: set[str] = set()

        async def tapped(scope: dict, receive, send) -> None:  # noqa: ANN001
            if scope["type"] == "http":
                for key, value in parse_qsl(scope.get("query_string", b"").decode()):
                    if key.lower() in self.WIRE_CREDENTIALS:
                        self.seen.add(value)
                for key, value in scope["headers"]:
                    if key.decode().lower() in self.WIRE_CREDENTIALS:
                        self.seen.add(value.decode())
            await app(scope, receive, send)

        return tapped  # type: ignore[return-value]

    def tokens(self) -> set[str]:
        """Every credential seen, and the signatures inside Authorization headers."""
        out = set(self.seen)
        for value in self.seen:
            for part in value.replace(",", " ").split():
                out.add(part.split("=", 1)[-1].split("/")[-1])
        return {t for t in out if len(t) >= 16}


@pytest.fixture
def simulator() -> TappedSimulator:
    sim = TappedSimulator()
    tag = uuid.uuid4().hex[:10]
    sim.settings["crm"].secret_key = f"crm-secret-{tag}"
    sim.settings["isales"].sk = f"isales-secret-{tag}"
    sim.settings["pushlog"].access_key_secret = f"pushlog-secret-{tag}"
    sim.settings["trtc"].secret_key = f"trtc-secret-{tag}"
    return sim


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def _warehouse_text(db: psycopg.Connection) -> str:
    """Every row of every table outside the system schemas, as text (what pg_dump would show)."""
    tables = db.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'"
    ).fetchall()
    assert len(tables) > 10
    parts = []
    for schema, name in tables:
        rows = db.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(schema, name))).fetchall()
        parts.extend(r[0] for r in rows)
    comments = db.execute("SELECT coalesce(string_agg(description, ' '), '') FROM pg_description").fetchone()[
        0
    ]
    return "\n".join([*parts, comments])


def test_a_full_run_of_every_source_leaves_no_secret_nor_signature_anywhere(
    simulator: TappedSimulator,
    warehouse_url: str,
    db: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
) -> None:
    caplog.set_level(logging.DEBUG)
    for source in SOURCES:
        source.setup(simulator, monkeypatch)
    sim = request.getfixturevalue("sim")
    warehouse_password = f"wh-secret-{uuid.uuid4().hex[:10]}"
    # trust authentication ignores it; the pipeline still holds it in WAREHOUSE_URL
    monkeypatch.setenv("WAREHOUSE_URL", _with_password(warehouse_url, warehouse_password))
    for source in SOURCES:
        tuned(monkeypatch, source.name)
        for name, value in source.env.items():
            monkeypatch.setenv(name, value)
    instance = DagsterInstance.ephemeral()
    started = int(time.time())
    results = []
    for source in SOURCES:
        source.setup(simulator, monkeypatch)  # its clock
        result = run(source, instance)
        assert result.success, failure_text(result)
        results.append(result)
    finished = int(time.time())

    env = sim.env()
    secrets = {
        env["CRM_SECRET_KEY"],
        env["ISALES_SK"],
        env["PUSHLOG_ACCESS_KEY_SECRET"],
        env["TRTC_SECRET_KEY"],
        warehouse_password,
    }
    derived = simulator.tokens()
    assert len(derived) >= 10  # signatures of every vendor were seen on the wire (a few requests each)
    # ...and the ones a leak would most likely show, computed from the secrets themselves
    for ts in range(started - 2, finished + 3):
        derived.add(crm_sign(env["CRM_EMAIL"], env["CRM_SECRET_KEY"], ts))
        derived.add(
            gen_usersig(
                int(env["TRTC_SDKAPPID"]), env["TRTC_SECRET_KEY"], env["TRTC_ADMIN_IDENTIFIER"], now=ts
            )
        )
    needles = secrets | derived | {quote(t, safe="") for t in derived}

    out, err = capfd.readouterr()
    texts = {"logs": caplog.text, "stdout": out, "stderr": err, "warehouse": _warehouse_text(db)}
    for result in results:
        run_id = result.run_id
        texts[f"event log {run_id}"] = "\n".join(serialize_value(e) for e in instance.all_logs(run_id))
        texts[f"run config {run_id}"] = serialize_value(instance.get_run_by_id(run_id).run_config)
        texts[f"metadata {run_id}"] = "\n".join(
            serialize_value(e.materialization.metadata) for e in result.get_asset_materialization_events()
        )
    assert all(v for k, v in texts.items() if k != "stdout")  # every place was looked at
    assert env["CRM_EMAIL"] not in secrets and "crm-secret" in env["CRM_SECRET_KEY"]
    leaks = [(where, needle[:12]) for where, text in texts.items() for needle in needles if needle in text]
    assert leaks == []


# ---- (b) errors: no warehouse password, the variable named ------------------------------------------


@pytest.mark.parametrize("problem", ["unreachable", "password in the query string", "no such database"])
def test_a_warehouse_that_cannot_be_used_fails_naming_the_variable_with_the_password_masked(
    pg_admin_url: str,
    simulator: Simulator,
    sim: ThreadedServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "p@ss-" + uuid.uuid4().hex[:8]  # percent-encoded in the URL: p%40ss-...
    if problem == "unreachable":
        url = f"postgresql://loader:{quote(password, safe='')}@127.0.0.1:{free_port()}/warehouse"
        masked = f"postgresql://loader:***@127.0.0.1:{urlsplit(url).port}/warehouse"
    elif problem == "password in the query string":  # libpq takes it there too
        port = free_port()
        url = f"postgresql://loader@127.0.0.1:{port}/warehouse?password={quote(password, safe='')}&sslmode=prefer"
        masked = f"postgresql://loader@127.0.0.1:{port}/warehouse?password=***&sslmode=prefer"
    else:
        url = _with_password(pg_admin_url, quote(password, safe=""))
        url = urlunsplit(urlsplit(url)._replace(path="/no_such_database"))
        masked = url.replace(quote(password, safe=""), "***")
    monkeypatch.setenv("WAREHOUSE_URL", url)
    tuned(monkeypatch, "crm")
    instance = DagsterInstance.ephemeral()
    result = run(SOURCES[0], instance)
    assert not result.success
    error = failure_text(result)
    assert f"WAREHOUSE_URL={masked}" in error
    assert ("does not exist" if problem == "no such database" else "Connection refused") in error
    out, err = capfd.readouterr()
    events = "\n".join(serialize_value(e) for e in instance.all_logs(result.run_id))
    for text in (error, events, caplog.text, out, err):
        assert password not in text and quote(password, safe="") not in text


# ---- (c) TLS: verified by default, a per-source CA bundle, no off switch --------------------------


@pytest.fixture
def tls_sim(simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The simulator over HTTPS with a certificate of its own CA; yields the CA's file."""
    ca = make_private_ca(tmp_path)
    server = ThreadedServer(simulator, ssl_certfile=str(ca.cert_file), ssl_keyfile=str(ca.key_file)).start()
    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    try:
        yield ca.ca_file
    finally:
        server.stop()


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_tls_is_verified_and_a_private_ca_is_trusted_through_the_sources_ca_bundle(
    source: Source,
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    warehouse_url: str,
    db: psycopg.Connection,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    source.setup(simulator, monkeypatch)
    ca_file = request.getfixturevalue("tls_sim")
    assert os.environ[f"{source.name.upper()}_BASE_URL"].startswith("https://127.0.0.1:")
    tuned(monkeypatch, source.name)
    for name, value in source.env.items():
        monkeypatch.setenv(name, value)

    result = run(source, DagsterInstance.ephemeral())  # the system's CAs: not trusted
    assert not result.success
    error = failure_text(result)
    assert f"{source.vendor} " in error and "certificate" in error
    assert f"{source.name.upper()}_CA_BUNDLE" in error
    assert sum(simulator.state.requests.values()) == 0  # refused before any request reached it

    (tmp_path / "other").mkdir()
    other = make_private_ca(tmp_path / "other")
    monkeypatch.setenv(f"{source.name.upper()}_CA_BUNDLE", str(other.ca_file))  # another CA: still refused
    assert not run(source, DagsterInstance.ephemeral()).success

    monkeypatch.setenv(f"{source.name.upper()}_CA_BUNDLE", str(ca_file))
    result = run(source, DagsterInstance.ephemeral())
    assert result.success, failure_text(result)
    table = sql.Identifier(*source.table.split("."))
    assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0] > 100


def test_no_setting_turns_tls_verification_off() -> None:
    """Only a CA bundle: no field of any source's resource disables verification."""
    for resource in RESOURCES:
        names = set(resource.model_fields)
        assert "ca_bundle" in names
        assert not {n for n in names if "verify" in n or "insecure" in n or n in {"tls", "ssl"}}


def test_an_unreadable_ca_bundle_is_refused_naming_its_variable(tmp_path: Path) -> None:
    for resource in RESOURCES:
        fields = _fields(resource, "https://127.0.0.1:1/x")
        res = resource(**fields, ca_bundle=str(tmp_path / "missing.pem"))
        with pytest.raises(SettingError, match=f"{resource.SOURCE.upper()}_CA_BUNDLE"):
            res.client()


# ---- (d) a base URL with credentials is refused, not stripped ----------------------------------------


def _fields(resource: type[VendorResource], base_url: str) -> dict[str, str]:
    """Every required field of ``resource`` filled in plausibly."""
    values = {
        "base_url": base_url,
        "email": "ops@example.com",
        "secret_key": "k",
        "ak": "ak",
        "sk": "sk",
        "vdn_ids": "1",
        "timezone": "Asia/Shanghai",
        "access_key_id": "id",
        "access_key_secret": "s",
        "enterprise_id": "7122600",
        "sdkappid": "1400000001",
        "admin_identifier": "administrator",
    }
    return {n: values[n] for n, info in resource.model_fields.items() if info.is_required()}


@pytest.mark.parametrize("resource", RESOURCES, ids=[r.SOURCE for r in RESOURCES])
@pytest.mark.parametrize(
    "base_url", ["https://user:pw-Zq81x@127.0.0.1:8443/api", "https://token-Zq81x@127.0.0.1:8443/api"]
)
def test_a_base_url_carrying_credentials_is_refused_naming_the_variable(
    resource: type[VendorResource], base_url: str
) -> None:
    res = resource(**_fields(resource, base_url))
    with pytest.raises(SettingError) as raised:
        res.client()
    text = str(raised.value)
    assert f"{resource.SOURCE.upper()}_BASE_URL carries credentials" in text
    assert "Zq81x" not in text  # the refusal does not repeat them
    # a plain URL is accepted
    client = resource(**_fields(resource, "https://127.0.0.1:8443/api")).client()
    asyncio.run(client.http.aclose())
