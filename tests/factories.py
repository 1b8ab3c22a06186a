"""Tiny factories: sensible defaults, keyword overrides, committed rows (other processes see
them). Call inside an app context (the `factory` fixture provides one)."""

from __future__ import annotations

import itertools
from typing import Any

from flask import current_app

from app.crypto import SecretBox
from app.extensions import db
from app.models import Account, Campaign, Client, Recipient, Suppression

_seq = itertools.count(1)


def create_client(**overrides: Any) -> Client:
    """A client besides the default one (id 1, made by the clean-state fixture)."""
    client = Client(**{"name": f"client {next(_seq)}", **overrides})
    db.session.add(client)
    db.session.commit()
    return client


def create_account(**overrides: Any) -> Account:
    n = next(_seq)
    password = overrides.pop("password", None)
    settings = current_app.extensions["settings"]
    values: dict[str, Any] = {
        "name": f"account-{n}",
        "provider": "smtp",
        "email": f"sender{n}@send{n}.example",
        "host": "127.0.0.1",
        "port": 2525,
        "security": "none",
        "username": None,
        "daily_limit": 1000,
        "warmup_enabled": False,
        "tags": [],
    }
    values.update(overrides)
    values.setdefault("sending_domain", values["email"].rsplit("@", 1)[1])
    if password is not None:
        values["secret_encrypted"] = SecretBox(settings.credentials_key.get_secret_value()).encrypt(
            password
        )
    account = Account(**values)
    db.session.add(account)
    db.session.commit()
    return account


def create_campaign(**overrides: Any) -> Campaign:
    n = next(_seq)
    values: dict[str, Any] = {
        "name": f"campaign-{n}",
        "subject": "Hello {{ first_name | default('there') }}",
        "body_text": "Hi {{ first_name | default('there') }},\nA short note.",
        "status": "draft",
    }
    values.update(overrides)
    campaign = Campaign(**values)
    db.session.add(campaign)
    db.session.commit()
    return campaign


def create_recipients(campaign: Campaign, emails: list[str], **overrides: Any) -> list[Recipient]:
    rows = []
    for email in emails:
        values: dict[str, Any] = {
            "campaign_id": campaign.id,
            "email": email.lower(),
            "domain": email.rsplit("@", 1)[1].lower(),
            "fields": {},
        }
        values.update(overrides)
        rows.append(Recipient(**values))
    db.session.add_all(rows)
    db.session.commit()
    return rows


def suppress(value: str, reason: str = "manual", client_id: int | None = None) -> Suppression:
    """A global suppression, or one client's (an unsubscribe) with `client_id`."""
    kind = "email" if "@" in value else "domain"
    row = Suppression(
        kind=kind, value=value.lower(), reason=reason, source="test", client_id=client_id
    )
    db.session.add(row)
    db.session.commit()
    return row


def create_running_campaign(emails: list[str], **overrides: Any) -> Campaign:
    """A campaign that is running with its recipients already in place, the way the API's
    start does it. Creating it running and adding recipients afterwards would race a live
    dispatcher, which completes a running campaign that has nothing left to do."""
    campaign = create_campaign(**{**overrides, "status": "draft"})
    create_recipients(campaign, emails)
    campaign.status = "running"
    db.session.commit()
    return campaign
