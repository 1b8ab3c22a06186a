"""The API while PostgreSQL or Redis is unreachable: 503 with Retry-After and the JSON error
shape (health says which store), one log line per outage, and normal answers again once
the store is back."""

from __future__ import annotations

import logging

import pytest
from redis import Redis
from sqlalchemy import create_engine

from app.extensions import db


@pytest.fixture
def database_away(app, monkeypatch):
    """The app's engine pointed at a port nothing listens on: a stopped PostgreSQL."""
    with app.app_context():
        real = db.engine
        dead = create_engine(
            "postgresql+psycopg2://postgres@127.0.0.1:1/none",
            connect_args={"connect_timeout": 1},
        )
        engines = db._app_engines[app]
        monkeypatch.setitem(engines, None, dead)
        db.session.remove()
    yield
    with app.app_context():
        engines[None] = real
        db.session.remove()
        dead.dispose()


def test_every_api_call_answers_503_with_retry_after_while_the_database_is_away(
    api, database_away, caplog
):
    from app.outages import outages

    outages.succeeded()
    caplog.set_level(logging.WARNING)
    caplog.clear()
    for method, path in [
        ("get", "/api/v1/accounts"),
        ("get", "/api/v1/campaigns/1"),
        ("post", "/api/v1/campaigns/1/start"),
        ("get", "/api/v1/suppressions"),
    ]:
        response = getattr(api, method)(path)
        assert response.status_code == 503, (path, response.get_data(as_text=True))
        assert response.headers["Retry-After"] == "5"
        error = response.get_json()["error"]
        assert error["code"] == "unavailable" and "PostgreSQL" in error["message"]
    started = [r for r in caplog.records if r.getMessage() == "outage.started"]
    assert len(started) == 1 and started[0].store == "database"
    assert not [r for r in caplog.records if r.exc_info]  # no traceback per request


def test_health_names_the_store_that_is_down(client, database_away):
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "degraded", "database": "down", "redis": "ok"}


def test_the_api_answers_normally_once_the_database_is_back(app, api, caplog):
    from app.outages import outages

    outages.succeeded()  # whatever an earlier test left
    caplog.set_level(logging.WARNING)
    caplog.clear()
    outages.failed("database", RuntimeError("x"))
    assert api.get("/api/v1/accounts").status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "app.outages"] == [
        "outage.started",
        "outage.ended",
    ]


def test_a_redis_outage_is_503_where_redis_is_needed(app, api, monkeypatch):
    monkeypatch.setitem(
        app.extensions,
        "redis",
        Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2),
    )
    response = api.get("/api/v1/limits")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "Redis" in response.get_json()["error"]["message"]
    # Where Redis is not needed (the figures come from the database then), all is well.
    assert api.get("/api/v1/accounts").status_code == 200


def test_health_polled_during_an_outage_logs_it_once(client, database_away, caplog):
    from app.outages import outages

    outages.succeeded()
    caplog.set_level(logging.WARNING)
    caplog.clear()
    for _ in range(5):
        assert client.get("/api/v1/health").status_code == 503
    assert [r.getMessage() for r in caplog.records] == ["outage.started"]
