from __future__ import annotations

import hashlib

from sqlalchemy import select

from app.models import ApiKey


def test_missing_key_is_401_json(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200  # the document itself is public
    response = client.get("/api/v1/accounts")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_key_is_401(client, api_key):
    response = client.get("/api/v1/accounts", headers={"Authorization": "Bearer sf_wrong"})
    assert response.status_code == 401
    assert response.get_json()["error"]["message"] == "invalid or revoked API key"


def test_non_bearer_scheme_is_401(client, api_key):
    response = client.get("/api/v1/accounts", headers={"Authorization": f"Basic {api_key}"})
    assert response.status_code == 401


def test_valid_key_passes_and_records_last_use(api, session):
    assert api.get("/api/v1/accounts").status_code == 200
    row = session.execute(select(ApiKey)).scalar_one()
    assert row.last_used_at is not None


def test_only_the_hash_is_stored(api_key, session):
    row = session.execute(select(ApiKey)).scalar_one()
    assert row.key_hash == hashlib.sha256(api_key.encode()).hexdigest()
    assert api_key not in (row.key_hash, row.prefix, row.name)


def test_revoked_key_is_refused(api, runner, session):
    key_id = session.execute(select(ApiKey.id)).scalar_one()
    result = runner.invoke(args=["keys", "revoke", str(key_id)])
    assert result.exit_code == 0, result.output
    response = api.get("/api/v1/accounts")
    assert response.status_code == 401
