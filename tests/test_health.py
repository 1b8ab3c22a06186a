from __future__ import annotations

from redis import Redis


def test_health_reports_ok_when_database_and_redis_answer(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_health_needs_no_api_key(client):
    assert client.get("/api/v1/health").status_code == 200


def test_health_is_503_when_redis_is_down(app, client, monkeypatch):
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    monkeypatch.setitem(app.extensions, "redis", dead)
    response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "degraded", "database": "ok", "redis": "down"}


def test_health_is_503_when_postgres_is_down(settings, table_names):
    from app import create_app

    broken = settings.model_copy(
        update={"database_url": "postgresql://postgres@127.0.0.1:1/nowhere"}
    )
    response = create_app(broken).test_client().get("/api/v1/health")
    assert response.status_code == 503
    assert response.get_json()["database"] == "down"
    assert response.get_json()["redis"] == "ok"
