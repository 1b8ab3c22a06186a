"""End-to-end, as a new user tries it: a three-row CSV with a blank cell in a column the
template uses, uploaded through the API, started, and sent by a real worker. Before the fix,
the blank-cell recipient was accepted and then failed for good at send time
(`template_error: undefined variable`)."""

from __future__ import annotations

import io
from email import message_from_bytes
from email.policy import default as default_policy

from tests.e2e.conftest import settled, status_counts, wait_until
from tests.pipeline import smtp_account

CSV = (
    "Email,First Name,Company\n"
    "ann@example.org,Ann,Acme\n"
    "bob@example.org,Bob,\n"
    "cy@example.org,,Initech\n"
)


def test_a_blank_cell_loses_no_recipient(stack, api, factory, smtp_server):
    factory.create_account(**smtp_account(smtp_server), daily_limit=100)
    created = api.post(
        "/api/v1/campaigns",
        data={
            "name": "first",
            "subject": "Hi {{ first_name | default('there') }}",
            "body_text": "Hello from {{ company }}, {{ first_name }}.",
            "file": (io.BytesIO(CSV.encode()), "contacts.csv"),
        },
        content_type="multipart/form-data",
    )
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["imported"] == 3
    assert body["warnings"]["blank_fields"] == {"company": 1, "first_name": 1}
    assert api.post(f"/api/v1/campaigns/{body['id']}/start").status_code == 200

    wait_until(settled(body["id"]), 60, "the campaign to be sent")
    assert status_counts(body["id"]) == {"sent": 3}
    subjects = {}
    for received in smtp_server.received:
        message = message_from_bytes(received.data, policy=default_policy)
        subjects[received.recipients[0]] = (
            message["Subject"],
            message.get_body(("plain",)).get_content(),
        )
    assert subjects["cy@example.org"][0] == "Hi there"
    assert "Hello from , Bob." in subjects["bob@example.org"][1]
    assert subjects["ann@example.org"][0] == "Hi Ann"
