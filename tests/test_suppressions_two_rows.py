"""Since migration 0003 a value may be suppressed twice: globally (NULL client) and as one
client's unsubscribe. The queries written before clients still answer once per value."""

from __future__ import annotations

from sqlalchemy import select

from app.models import Suppression

CAMPAIGN = {"name": "c", "subject": "Hi", "body_text": "Hello"}


def test_an_import_counts_an_address_suppressed_twice_once(api, factory):
    factory.suppress("p@to.example", "unsubscribed", client_id=1)
    factory.suppress("p@to.example", "bounced")
    response = api.post(
        "/api/v1/campaigns",
        json={**CAMPAIGN, "recipients": [{"email": "p@to.example"}, {"email": "ok@to.example"}]},
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["imported"], body["rejected"]["suppressed"]) == (1, 1), body
    assert [e["row"] for e in body["errors"]] == [1]


def test_an_operator_suppression_beside_a_client_unsubscribe_is_global(admin_api, factory, session):
    # The operator's (an admin key's) manual block is global.
    factory.suppress("p@to.example", "unsubscribed", client_id=1)
    first = admin_api.post("/api/v1/suppressions", json={"email": "p@to.example"})
    again = admin_api.post("/api/v1/suppressions", json={"email": "p@to.example"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"]
    rows = session.execute(
        select(Suppression.client_id, Suppression.reason).order_by(Suppression.id)
    ).all()
    assert [tuple(r) for r in rows] == [(1, "unsubscribed"), (None, "manual")]


def test_an_admin_deleting_a_value_suppressed_twice_lifts_the_global_row_first(
    admin_api, factory, session
):
    factory.suppress("p@to.example", "unsubscribed", client_id=1)
    factory.suppress("p@to.example", "manual")
    assert admin_api.delete("/api/v1/suppressions/p@to.example").status_code == 204
    session.expire_all()
    left = session.execute(select(Suppression.client_id, Suppression.reason)).all()
    assert [tuple(r) for r in left] == [(1, "unsubscribed")]


def test_a_client_key_lifts_its_own_row_and_never_the_global_one(api, factory, session):
    factory.suppress("p@to.example", "unsubscribed", client_id=1)
    factory.suppress("p@to.example", "bounced")
    lifted = api.delete("/api/v1/suppressions/p@to.example?confirm=true")
    assert lifted.status_code == 204
    refused = api.delete("/api/v1/suppressions/p@to.example")
    assert refused.status_code == 403
    assert "admin key" in refused.get_json()["error"]["message"]
    session.expire_all()
    left = session.execute(select(Suppression.client_id, Suppression.reason)).all()
    assert [tuple(r) for r in left] == [(None, "bounced")]
