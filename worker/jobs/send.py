"""The send path: the recipients the dispatcher gave one account, sent over one pooled SMTP
connection, each claimed on its own.

For each recipient, in order:

1. `queued -> sending` by a conditional UPDATE that also checks the campaign is running and
   the account active; the Message-ID is stored with the claim and committed BEFORE any SMTP
   (no row changed: a duplicate task or another worker got there first, do nothing);
2. re-check suppression (in the same statement) and hand back rows that may not go;
3. render the templates in the sandbox, build the message, send it;
4. classify the reply and record the outcome with its event.

The outcome of message k is written in the same transaction as the claim of message k+1,
so there is one commit per message and at most one row per process is ever `sending`:
a killed worker leaves at most one `unknown`, never a duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import Account, AccountStatus, Campaign
from app.services.limits import LimitTable, account_day_window, load_limits, make_limiter
from app.services.templating import recipient_context, template_limits
from app.services.unsubscribe import UnsubscribeTokens
from app.settings import Settings
from rotator.classify import Outcome, SmtpReply, Verdict, classify_reply
from rotator.message import MessageSpec, build_message, make_message_id
from rotator.templates import TemplateError, compiled_for
from worker.jobs.heartbeat import ensure_beating
from worker.jobs.outcomes import Recorded, Sent, event_data, record
from worker.jobs.send_release import after_outage, hand_back, release_held
from worker.jobs.send_slots import Held, Slots, Timing
from worker.jobs.send_sql import (
    CLAIM,
    FINISH_SENT_THEN_CLAIM,
    SUPPRESS_CLAIMED,
)
from worker.jobs.smtp import endpoint_for, smtp_pool

log = logging.getLogger(__name__)

@dataclass
class BatchResult:
    outcomes: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    handed_back: int = 0
    # Of those handed back: reached after their moment had passed, placed again.
    late: int = 0

    def count(self, key: str) -> None:
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


@dataclass(frozen=True)
class _Claimed:
    sent: Sent
    fields: dict[str, Any]
    reservation: str | None
    suppressed: bool


def send_one(recipient_id: int) -> BatchResult:
    """DESIGN's `send_message(recipient_id)`: the same path for a batch of one."""
    account_id = db.session.execute(
        text("SELECT account_id FROM recipients WHERE id = :id AND status = 'queued'"),
        {"id": recipient_id},
    ).scalar_one_or_none()
    db.session.rollback()
    if account_id is None:
        return BatchResult(duplicates=1)
    return send_batch(account_id, [recipient_id])


def send_batch(account_id: int, recipient_ids: list[int]) -> BatchResult:
    settings: Settings = current_app.extensions["settings"]
    # One connection for the whole batch: the pool's pre-ping would otherwise cost a round
    # trip after every per-message commit.
    with (
        db.engine.connect() as connection,
        Session(bind=connection, expire_on_commit=False) as session,
    ):
        return _send_batch(session, settings, account_id, recipient_ids)


def _send_batch(
    session: Session, settings: Settings, account_id: int, recipient_ids: list[int]
) -> BatchResult:
    result = BatchResult()
    sender = _Sender.load(session, settings, account_id)
    if sender is None:
        result.handed_back = hand_back(session, settings, account_id, recipient_ids)
        session.commit()
        return result
    previous: _Delivery | None = None
    # An SMTP outcome held in memory until the commit that writes it.
    unwritten: _Delivery | None = None
    try:
        slots = Slots.hold(session, settings, account_id, recipient_ids, sender.holder)
        session.commit()
        for position, recipient_id in enumerate(recipient_ids):
            timing = slots.timing(recipient_id)
            if timing is Timing.EARLY:
                rest = recipient_ids[position:]
                release_held(session, sender.holder, rest)
                slots.publish_later(account_id, rest)
                break
            if timing is Timing.LATE and not sender.take_place_now(slots.rows[recipient_id]):
                late = hand_back(session, settings, account_id, [recipient_id])
                result.handed_back += late
                result.late += late
                session.commit()
                continue
            finished = (
                previous if previous is not None and sender.can_fast_finish(previous) else None
            )
            if previous is not None and finished is None:
                recorded = sender.record(previous)
                if recorded.stops_account:
                    session.commit()
                    unwritten = None
                    result.handed_back = hand_back(
                        session, settings, account_id, recipient_ids[position:]
                    )
                    session.commit()
                    return result
            previous = None
            claimed = sender.claim(recipient_id, finished)
            session.commit()  # the claim (and the previous outcome) is durable before SMTP
            unwritten = None
            if claimed is None:
                if hand_back(session, settings, account_id, [recipient_id]):
                    result.handed_back += 1
                    session.commit()
                    # The account left rotation or the campaign stopped: the rest waits too.
                    result.handed_back += hand_back(
                        session, settings, account_id, recipient_ids[position + 1 :]
                    )
                    session.commit()
                    return result
                result.duplicates += 1
                continue
            if claimed.suppressed:
                session.execute(SUPPRESS_CLAIMED, {"id": recipient_id, "now": _now()})
                session.commit()
                sender.release(claimed)
                result.count("suppressed")
                continue
            previous = unwritten = sender.deliver(claimed, result)
        if previous is not None:
            sender.record(previous)
        session.commit()
    except OperationalError:
        # The database went away: nothing more is sent; the outcome held in memory is
        # written once it is back (within the send lease), the rest goes back to pending.
        log.warning("send.database_unreachable", extra={"account_id": account_id})
        try:
            write = None if unwritten is None else partial(sender.record, unwritten)
            result.handed_back += after_outage(session, settings, write, account_id, recipient_ids)
        except BaseException:
            release_held(session, sender.holder, recipient_ids)
            raise
    except BaseException:
        session.rollback()
        release_held(session, sender.holder, recipient_ids)
        raise
    return result


@dataclass(frozen=True)
class _Delivery:
    """One message's SMTP outcome, waiting to be written with the next commit."""

    sent: Sent
    reply: SmtpReply
    verdict: Verdict
    pause_until: datetime | None


class _Sender:
    """Everything one batch needs about its account, loaded once."""

    def __init__(self, session: Session, settings: Settings, account: Account) -> None:
        from redis import Redis

        self.session = session
        self.settings = settings
        self.account = account
        redis: Redis = current_app.extensions["redis"]
        self.limiter = make_limiter(redis, settings)
        self.limits: LimitTable = load_limits(session, settings)
        self.tokens = UnsubscribeTokens(
            settings.secret_key.get_secret_value(), settings.public_base_url
        )
        self.endpoint = endpoint_for(settings, account)
        self.campaigns: dict[int, Campaign] = {}
        self.failures_known_zero = account.consecutive_failures == 0
        # Beating before the first row is marked as held by this process.
        self.holder = ensure_beating(settings)
        # Only a mailbox the operator owns: unsubscribe@<sending domain> of a consumer account
        # would be a stranger's inbox receiving working tokens.
        self.mailbox = settings.unsubscribe_mailbox

    @classmethod
    def load(cls, session: Session, settings: Settings, account_id: int) -> _Sender | None:
        account = session.get(Account, account_id)
        if account is None or account.status != AccountStatus.ACTIVE.value:
            return None
        return cls(session, settings, account)

    def claim(self, recipient_id: int, finished: _Delivery | None = None) -> _Claimed | None:
        """Claims one recipient; `finished`, a plain success, is recorded in the same trip."""
        message_id = make_message_id(self.account.sending_domain)
        params: dict[str, Any] = {
            "id": recipient_id,
            "account_id": self.account.id,
            "message_id": message_id,
            "now": _now(),
            "holder": self.holder,
        }
        statement = CLAIM
        if finished is not None:
            statement = FINISH_SENT_THEN_CLAIM
            params.update(
                done_id=finished.sent.recipient_id,
                code=finished.reply.code,
                reply=finished.reply.text,
                data=event_data(finished.sent, finished.reply, finished.verdict),
            )
        row = self.session.execute(statement, params).first()
        if row is None:
            return None
        return _Claimed(
            sent=Sent(
                recipient_id=recipient_id,
                campaign_id=row.campaign_id,
                email=row.email,
                domain=row.domain,
                attempts=row.attempts,
                message_id=message_id,
            ),
            fields=row.fields or {},
            reservation=row.reservation,
            suppressed=row.suppressed,
        )

    def campaign(self, campaign_id: int) -> Campaign:
        if campaign_id not in self.campaigns:
            campaign = self.session.get(Campaign, campaign_id)
            assert campaign is not None  # the claim joined it
            self.campaigns[campaign_id] = campaign
        return self.campaigns[campaign_id]

    def deliver(self, claimed: _Claimed, result: BatchResult) -> _Delivery:
        """Sends one claimed message; its outcome is written with the next commit."""
        sent = claimed.sent
        try:
            data = self._build(claimed)
        except TemplateError as exc:
            reply = SmtpReply.from_error("template_error", str(exc)[:300])
            verdict = Verdict(Outcome.FAILED, "template_error", account_failure=False)
        except ValueError as exc:  # HeaderInjection and any other message the builder refuses
            reply = SmtpReply.from_error("message_error", str(exc)[:300])
            verdict = Verdict(Outcome.FAILED, "message_error", account_failure=False)
        else:
            reply = smtp_pool().send(
                str(self.account.id), self.endpoint, self.account.email, sent.email, data
            )
            verdict = classify_reply(reply, self.account.provider)
        result.count(verdict.outcome.value)
        log.info(
            "send.outcome",
            extra={
                "account_id": self.account.id,
                "campaign_id": sent.campaign_id,
                "recipient_id": sent.recipient_id,
                "recipient_domain": sent.domain,
                "smtp_code": reply.code,
                "outcome": verdict.outcome.value,
                "reason": verdict.reason,
            },
        )
        if verdict.outcome in (Outcome.ACCOUNT_PAUSED, Outcome.ACCOUNT_DISABLED):
            self.release(claimed)
            smtp_pool().close(str(self.account.id))
        pause_until = self._quota_frees_at() if verdict.pause_until_window_frees else None
        return _Delivery(sent, reply, verdict, pause_until)

    def can_fast_finish(self, delivery: _Delivery) -> bool:
        """A plain success on an account with no failure streak to reset."""
        return delivery.verdict.outcome is Outcome.SENT and self.failures_known_zero

    def record(self, delivery: _Delivery) -> Recorded:
        recorded = record(
            self.session,
            self.settings,
            sent=delivery.sent,
            account_id=self.account.id,
            reply=delivery.reply,
            verdict=delivery.verdict,
            now=_now(),
            pause_until_window_frees=delivery.pause_until,
            sending_domain=self.account.sending_domain,
        )
        # record() resets the streak on success and bounce, counts a failure when the
        # verdict says so, and leaves it alone for refusals about the recipient.
        if delivery.verdict.account_failure:
            self.failures_known_zero = False
        elif delivery.verdict.outcome in (Outcome.SENT, Outcome.BOUNCED):
            self.failures_known_zero = True
        return recorded

    def _build(self, claimed: _Claimed) -> bytes:
        sent = claimed.sent
        campaign = self.campaign(sent.campaign_id)
        token = self.tokens.token(sent.recipient_id)
        unsubscribe_url = f"{self.settings.public_base_url}/u/{token}"
        templates = compiled_for(
            campaign.subject,
            campaign.body_text,
            campaign.body_html,
            limits=template_limits(self.settings),
        )
        rendered = templates.render(
            recipient_context(campaign.field_names, claimed.fields, sent.email, unsubscribe_url)
        )
        return build_message(
            MessageSpec(
                from_email=self.account.email,
                from_name=campaign.from_name or self.account.from_name,
                to_email=sent.email,
                subject=rendered.subject,
                text=rendered.text,
                html=rendered.html,
                unsubscribe_url=unsubscribe_url,
                unsubscribe_mailto=(
                    f"mailto:{self.mailbox}?subject=unsubscribe-{token}" if self.mailbox else None
                ),
                company_address=self.settings.company_address,
                message_id=sent.message_id,
            )
        )

    def _quota_frees_at(self) -> datetime | None:
        """A provider's daily quota is spent: pause until our own day window for the account
        frees its oldest send (the provider counts a rolling day as well)."""
        window = account_day_window(self.account, self.settings)
        used = self.limiter.used([window])[0]
        if used == 0:
            return None
        frees = self.limiter.frees_at(replace(window, limit=used))
        return datetime.fromtimestamp(frees, UTC) if frees else None

    def take_place_now(self, held: Held) -> bool:
        """A send reached after its moment: True when its reservation could move to now."""
        if held.reservation is None:
            return True
        campaign = self.campaign(held.campaign_id)
        windows = self.limits.windows(
            account=self.account,
            recipient_domain=held.domain,
            campaign_id=campaign.id,
            campaign_daily_cap=campaign.daily_cap,
        )
        return self.limiter.move(windows, held.reservation).allowed

    def release(self, claimed: _Claimed) -> None:
        """Gives back the limiter reservation of a message that never reached a server."""
        if claimed.reservation is None:
            return
        campaign = self.campaign(claimed.sent.campaign_id)
        windows = self.limits.windows(
            account=self.account,
            recipient_domain=claimed.sent.domain,
            campaign_id=campaign.id,
            campaign_daily_cap=campaign.daily_cap,
        )
        self.limiter.release(windows, claimed.reservation)


def _now() -> datetime:
    return datetime.now(UTC)
