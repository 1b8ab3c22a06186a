"""POST and GET /api/v1/campaigns/<id>/recipients: adding (JSON or CSV) and keyset pages."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select

from app.models import Campaign, Recipient

ITEM_KEYS = {
    "id", "email", "domain", "status", "attempts", "next_attempt_at", "account_id",
    "message_id", "last_smtp_code", "last_smtp_text", "fields", "sent_at", "updated_at",
}  # fmt: skip


def _recipient_count(session):
    session.expire_all()
    return session.execute(select(func.count()).select_from(Recipient)).scalar_one()


def test_recipients_are_added_from_json(api, factory, session):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["old@x.example"])
    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/recipients",
        json={
            "recipients": [
                {"email": "new@x.example", "city": "Oslo"},
                {"email": "old@x.example"},
                {"email": "broken"},
            ]
        },
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["imported"] == 1
    assert body["rejected"] == {"invalid": 1, "duplicate": 1, "suppressed": 0}
    assert set(body) == {"imported", "rejected", "errors", "warnings"}
    campaign_body = api.get(f"/api/v1/campaigns/{campaign.id}").get_json()
    assert campaign_body["counts"]["pending"] == 2
    assert campaign_body["field_names"] == ["city"]


def test_recipients_are_added_from_a_csv_upload(api, factory):
    campaign = factory.create_campaign(status="running")
    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/recipients",
        data={"file": (io.BytesIO(b"\xef\xbb\xbfEmail;Name\r\na@y.example;A\r\n"), "more.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["imported"] == 1


def test_adding_to_an_unknown_campaign_is_404(api):
    response = api.post(
        "/api/v1/campaigns/99/recipients", json={"recipients": [{"email": "a@b.example"}]}
    )
    assert response.status_code == 404


@pytest.mark.parametrize("status", ["completed", "cancelled"])
def test_adding_to_a_finished_campaign_is_a_conflict(api, factory, session, status):
    campaign = factory.create_campaign(status=status)
    response = api.post(
        f"/api/v1/campaigns/{campaign.id}/recipients",
        json={"recipients": [{"email": "a@b.example"}]},
    )
    assert response.status_code == 409
    assert status in response.get_json()["error"]["message"]
    assert _recipient_count(session) == 0


def test_an_empty_list_adds_nothing_and_says_so(api, factory):
    campaign = factory.create_campaign()
    response = api.post(f"/api/v1/campaigns/{campaign.id}/recipients", json={"recipients": []})
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "recipients"


def test_recipients_are_listed_page_by_page_until_next_cursor_is_null(api, factory):
    campaign = factory.create_campaign()
    other = factory.create_campaign()
    rows = factory.create_recipients(campaign, [f"r{i}@x.example" for i in range(5)])
    factory.create_recipients(other, ["elsewhere@x.example"])
    seen, cursor, pages = [], None, 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(f"/api/v1/campaigns/{campaign.id}/recipients?{query}").get_json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r.id for r in rows]
    assert pages == 3


def test_a_full_last_page_has_a_null_cursor(api, factory):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@x.example", "b@x.example"])
    page = api.get(f"/api/v1/campaigns/{campaign.id}/recipients?limit=2").get_json()
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


def test_each_item_carries_the_delivery_fields(api, factory):
    campaign = factory.create_campaign()
    account = factory.create_account()
    factory.create_recipients(
        campaign,
        ["a@x.example"],
        status="deferred",
        attempts=1,
        account_id=account.id,
        last_smtp_code=451,
        last_smtp_text="4.7.1 try later",
        fields={"first_name": "Ana"},
    )
    [item] = api.get(f"/api/v1/campaigns/{campaign.id}/recipients").get_json()["items"]
    assert set(item) == ITEM_KEYS
    assert item["status"] == "deferred"
    assert (item["attempts"], item["account_id"], item["last_smtp_code"]) == (1, account.id, 451)
    assert item["fields"] == {"first_name": "Ana"}
    assert item["domain"] == "x.example"


def test_the_status_filter_selects_one_status(api, factory):
    campaign = factory.create_campaign()
    factory.create_recipients(campaign, ["a@x.example", "b@x.example"])
    factory.create_recipients(campaign, ["c@x.example"], status="bounced")
    page = api.get(f"/api/v1/campaigns/{campaign.id}/recipients?status=bounced").get_json()
    assert [i["email"] for i in page["items"]] == ["c@x.example"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("cursor=not-a-cursor!", "cursor"),
        ("cursor=LTE", "cursor"),  # base64 of "-1"
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
    ],
)
def test_bad_query_parameters_are_422_naming_them(api, factory, query, field):
    campaign = factory.create_campaign()
    response = api.get(f"/api/v1/campaigns/{campaign.id}/recipients?{query}")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_listing_recipients_of_an_unknown_campaign_is_404(api, session):
    assert api.get("/api/v1/campaigns/5/recipients").status_code == 404
    assert session.execute(select(func.count()).select_from(Campaign)).scalar_one() == 0
