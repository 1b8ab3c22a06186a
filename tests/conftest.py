"""Shared fixtures: a throwaway PostgreSQL database created and dropped by the run, migrated
once with Alembic; Redis DB 13 flushed per test; real SMTP servers from tests/smtp_server.py.

Isolation is by TRUNCATE after each test rather than a rolled-back outer transaction:
the send pipeline's tests need real commits seen by other connections and other processes
(SKIP LOCKED claims, a Celery worker, the CLI in a subprocess)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
import redis
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.settings import Settings
from tests import redis_urls
from tests.bot_api import BotApiStandIn

PG_ADMIN_DSN = os.environ.get("SENDFLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_TEST_URL = redis_urls.APP_URL
TEST_DB_NAME = f"sendfleet_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _admin_exec(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN_DSN)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    # Sorted bytewise, as the deployment's clusters are made (docker-compose.yml).
    _admin_exec(f"CREATE DATABASE \"{TEST_DB_NAME}\" TEMPLATE template0 LC_COLLATE 'C'")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{TEST_DB_NAME}"
    finally:
        _admin_exec(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{TEST_DB_NAME}' AND pid <> pg_backend_pid()"
        )
        _admin_exec(f'DROP DATABASE IF EXISTS "{TEST_DB_NAME}"')


@pytest.fixture(scope="session")
def settings_env(database_url: str) -> dict[str, str]:
    """The environment of a test deployment: used for Settings here and for subprocesses."""
    return {
        "SENDFLEET_ENV": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_TEST_URL,
        "SECRET_KEY": "test-secret-key",
        "CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "PUBLIC_BASE_URL": "https://sendfleet.test",
        "COMPANY_ADDRESS": "Sendfleet Test Ltd, 1 Test Street, 10115 Berlin",
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "WARNING",
        # In-process tests send every queued row at once; placing sends ahead and pacing an
        # account across its minute have their own tests (tests/test_dispatch_ahead.py, the
        # end-to-end tests, which run with the production defaults).
        "SEND_PACING": "false",
        "DISPATCH_HORIZON_SECONDS": "0",
    }


@pytest.fixture(scope="session")
def settings(settings_env: dict[str, str]) -> Settings:
    return Settings(**{k.lower(): v for k, v in settings_env.items()})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def app(settings: Settings) -> Iterator[Flask]:
    from flask_migrate import upgrade

    application = create_app(settings)
    with application.app_context():
        upgrade()
    yield application
    with application.app_context():
        from app.extensions import db

        db.engine.dispose()


@pytest.fixture(scope="session")
def table_names(app: Flask) -> list[str]:
    from app.models import Base

    return [t.name for t in Base.metadata.sorted_tables]


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test that touches the app starts from empty tables and an empty Redis DB."""
    if "app" not in request.fixturenames:
        yield
        return
    app: Flask = request.getfixturevalue("app")
    tables: list[str] = request.getfixturevalue("table_names")
    redis_client = app.extensions["redis"]
    redis_client.flushdb()
    with app.app_context():
        from app.extensions import db

        db.session.remove()
        _truncate(db.engine, tables, app.extensions["settings"].default_client_name)
    yield
    with app.app_context():
        db.session.remove()


def _truncate(engine: Any, tables: list[str], default_client_name: str) -> None:
    """Empty tables, and the default client (id 1, made by migration 0003) alone again.

    A backend whose client the previous test killed (a worker stopped with SIGKILL) goes on
    with its statement until it ends; one that then wants a table the TRUNCATE already
    holds deadlocks with it, and PostgreSQL cancels the TRUNCATE. Once that statement has
    ended its backend is gone, so the TRUNCATE is tried again."""
    from psycopg2.errors import DeadlockDetected, LockNotAvailable
    from sqlalchemy.exc import OperationalError

    for attempt in range(5):
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
                conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
                conn.exec_driver_sql(
                    "INSERT INTO clients (name) VALUES (%s)", (default_client_name,)
                )
            return
        except OperationalError as error:
            if attempt == 4 or not isinstance(error.orig, DeadlockDetected | LockNotAvailable):
                raise
            time.sleep(0.5)


@pytest.fixture
def app_context(app: Flask) -> Iterator[None]:
    with app.app_context():
        yield


@pytest.fixture
def session(app: Flask) -> Iterator[Any]:
    """The app's session inside an app context, for service-level tests."""
    from app.extensions import db

    with app.app_context():
        yield db.session
        db.session.rollback()


@pytest.fixture
def redis_client(app: Flask) -> redis.Redis:
    return app.extensions["redis"]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    return app.test_cli_runner()


class ApiClient:
    """A test client that sends `Authorization: Bearer <key>` on every request."""

    def __init__(self, client: FlaskClient, key: str) -> None:
        self.client = client
        self.key = key

    def _headers(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        headers = dict(kwargs.pop("headers", {}) or {})
        headers.setdefault("Authorization", f"Bearer {self.key}")
        return headers

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, headers=self._headers(kwargs), **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.client.post(path, headers=self._headers(kwargs), **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.client.put(path, headers=self._headers(kwargs), **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.client.patch(path, headers=self._headers(kwargs), **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.client.delete(path, headers=self._headers(kwargs), **kwargs)


@pytest.fixture
def api_key(app: Flask) -> str:
    from app.api.auth import create_key
    from app.db import unit_of_work

    with app.app_context(), unit_of_work() as session:
        _, key = create_key(session, "test")
    return key


@pytest.fixture
def api(client: FlaskClient, api_key: str) -> ApiClient:
    return ApiClient(client, api_key)


@pytest.fixture
def admin_api(app: Flask, client: FlaskClient) -> ApiClient:
    """An admin key of the default client (system limits, clients, X-Sendfleet-Client)."""
    from app.api.auth import create_key
    from app.db import unit_of_work

    with app.app_context(), unit_of_work() as session:
        _, key = create_key(session, "admin", is_admin=True)
    return ApiClient(client, key)


@pytest.fixture
def factory(app: Flask) -> Iterator[Any]:
    from tests import factories

    with app.app_context():
        yield factories


@pytest.fixture
def smtp_server() -> Iterator[Any]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, scriptable to answer 421, 535, 550 ..."""
    from tests.smtp_server import ScriptedSMTPServer

    with ScriptedSMTPServer() as server:
        yield server


@pytest.fixture
def pipelining() -> Iterator[Any]:
    """A real SMTP server that offers PIPELINING (RFC 2920)."""
    from tests.smtp_server import ScriptedSMTPServer

    with ScriptedSMTPServer(pipelining=True) as server:
        yield server


@pytest.fixture
def smtp_servers() -> Iterator[list[Any]]:
    """Three SMTP servers, one per sender account of a pool."""
    from tests.smtp_server import ScriptedSMTPServer

    servers = [ScriptedSMTPServer().start() for _ in range(3)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def one_claim_at_a_time(app: Flask, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """SEND_CLAIM_GROUP=1: the send path claims, sends and records one row at a time, as
    the tests of the per-row hold and of an outage between two messages need."""
    monkeypatch.setitem(
        app.extensions, "settings", settings.model_copy(update={"send_claim_group": 1})
    )


@pytest.fixture
def groups_of_3(app, settings, monkeypatch):
    """SEND_CLAIM_GROUP 3, for the send path's group tests."""
    monkeypatch.setitem(
        app.extensions, "settings", settings.model_copy(update={"send_claim_group": 3})
    )


@pytest.fixture
def bot_api() -> Iterator[BotApiStandIn]:
    """A Telegram Bot API stand-in on a real port (tests/bot_api.py), answering "ok"."""
    api = BotApiStandIn()
    yield api
    api.close()
