"""One campaign message for one recipient, as the send path builds it: the templates
rendered in the sandbox with the recipient's fields and unsubscribe link, then the MIME
message with its headers, footer and List-Unsubscribe (rotator.message.build_message).
The web UI's preview renders through here, so what it shows is what is sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.models import Account, Campaign
from app.services.templating import recipient_context, template_limits
from app.services.unsubscribe import UnsubscribeTokens
from app.settings import Settings
from rotator.message import MessageSpec, build_message
from rotator.templates import compiled_for


@dataclass(frozen=True)
class Outgoing:
    raw: bytes
    unsubscribe_url: str


def build_outgoing(
    settings: Settings,
    campaign: Campaign,
    account: Account,
    *,
    recipient_id: int,
    email: str,
    fields: Mapping[str, Any],
    message_id: str,
) -> Outgoing:
    """:raises rotator.templates.TemplateError: the templates fail for this recipient."""
    tokens = UnsubscribeTokens.of(settings.secret_key.get_secret_value(), settings.public_base_url)
    token = tokens.token(recipient_id)
    unsubscribe_url = f"{settings.public_base_url}/u/{token}"
    templates = compiled_for(
        campaign.subject,
        campaign.body_text,
        campaign.body_html,
        limits=template_limits(settings),
    )
    rendered = templates.render(
        recipient_context(campaign.field_names, fields, email, unsubscribe_url)
    )
    mailbox = settings.unsubscribe_mailbox
    raw = build_message(
        MessageSpec(
            from_email=account.email,
            from_name=campaign.from_name or account.from_name,
            to_email=email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            unsubscribe_url=unsubscribe_url,
            unsubscribe_mailto=(
                f"mailto:{mailbox}?subject=unsubscribe-{token}" if mailbox else None
            ),
            company_address=settings.company_address,
            message_id=message_id,
        )
    )
    return Outgoing(raw, unsubscribe_url)
