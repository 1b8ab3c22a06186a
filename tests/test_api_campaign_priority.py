"""A campaign's `priority`: its share of its client's capacity, set at creation."""

from __future__ import annotations

import io

import pytest

CAMPAIGN = {"name": "c", "subject": "Hi", "body_text": "Hello"}


def test_priority_defaults_to_1_and_is_shown(api):
    created = api.post("/api/v1/campaigns", json=CAMPAIGN).get_json()
    assert api.get(f"/api/v1/campaigns/{created['id']}").get_json()["priority"] == 1
    urgent = api.post("/api/v1/campaigns", json={**CAMPAIGN, "priority": 5}).get_json()
    assert api.get(f"/api/v1/campaigns/{urgent['id']}").get_json()["priority"] == 5


def test_priority_from_an_upload(api):
    data = {**CAMPAIGN, "priority": "4", "file": (io.BytesIO(b"email\na@x.example\n"), "c.csv")}
    response = api.post("/api/v1/campaigns", data=data, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    assert api.get(f"/api/v1/campaigns/{response.get_json()['id']}").get_json()["priority"] == 4


@pytest.mark.parametrize("value", [0, 101, -1, "high", 1.5, None])
def test_a_bad_priority_is_422_naming_it_and_stores_nothing(api, value):
    response = api.post("/api/v1/campaigns", json={**CAMPAIGN, "priority": value})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["error"]["field"] == "priority"
    assert api.get("/api/v1/campaigns").get_json()["items"] == []
