"""One account's side of a send batch: its rows claimed a group at a time, each message
rendered, built and sent over the pooled connection, and the group's outcomes written."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from app.models import Account, AccountStatus, Campaign
from app.services.limits import LimitTable, account_day_window, load_limits, make_limiter
from app.services.outgoing import build_outgoing
from app.settings import Settings
from rotator.classify import Outcome, SmtpReply, Verdict, classify_reply
from rotator.limiter import Window
from rotator.message import make_message_id
from rotator.templates import TemplateError
from rotator.transport import NextMessage
from worker.jobs.heartbeat import ensure_beating
from worker.jobs.outcomes import Recorded, Sent, event_data, record
from worker.jobs.prepared import Prepared
from worker.jobs.send_slots import Held
from worker.jobs.send_sql import (
    CLAIM_GROUP,
    FINISH_SENT_GROUP,
    FINISH_SENT_THEN_CLAIM_GROUP,
    SUPPRESS_CLAIMED,
    UNCLAIM,
)
from worker.jobs.smtp import endpoint_for, smtp_pool

if TYPE_CHECKING:
    from worker.jobs.send import BatchResult

log = logging.getLogger(__name__)

_CLAIM_GROUP = Prepared.of("sendfleet_claim_group", CLAIM_GROUP)
_FINISH_SENT_GROUP = Prepared.of("sendfleet_finish_sent_group", FINISH_SENT_GROUP)
_FINISH_SENT_THEN_CLAIM_GROUP = Prepared.of(
    "sendfleet_finish_sent_then_claim_group", FINISH_SENT_THEN_CLAIM_GROUP
)


@dataclass(frozen=True)
class Claimed:
    sent: Sent
    fields: dict[str, Any]
    reservation: str | None
    suppressed: bool


@dataclass(frozen=True)
class Delivery:
    """One message's SMTP outcome, waiting to be written with the next commit."""

    sent: Sent
    reply: SmtpReply
    verdict: Verdict
    pause_until: datetime | None


class Sender:
    """Everything one batch needs about its account, loaded once."""

    def __init__(self, session: Session, settings: Settings, account: Account) -> None:
        from redis import Redis

        self.session = session
        self.settings = settings
        self.account = account
        redis: Redis = current_app.extensions["redis"]
        self.limiter = make_limiter(redis, settings)
        self.limits: LimitTable = load_limits(session, settings)
        self.endpoint = endpoint_for(settings, account)
        self.campaigns: dict[int, Campaign] = {}
        # The limits are loaded once per batch, so a send's windows depend only on these.
        self._windows_of: dict[tuple[int, str], list[Window]] = {}
        # The next message, built early so that its envelope goes with this one's data:
        # (its Message-ID, its bytes or why it could not be built).
        self._built_ahead: tuple[str, bytes | Exception] | None = None
        self.failures_known_zero = account.consecutive_failures == 0
        # Rows whose claim this batch may have committed (with the Message-ID of its latest
        # claim), and those whose message has gone to the SMTP server (from the moment its
        # data is handed over): a claimed row not attempted was never sent, whatever
        # failed, so it may go back.
        self.claimed: dict[int, str] = {}
        self.attempted: set[int] = set()
        # Beating before the first row is marked as held by this process.
        self.holder = ensure_beating(settings)

    @classmethod
    def load(cls, session: Session, settings: Settings, account_id: int) -> Sender | None:
        account = session.get(Account, account_id)
        if account is None or account.status != AccountStatus.ACTIVE.value:
            return None
        return cls(session, settings, account)

    def claim_group(
        self, recipient_ids: list[int], *, finished: Sequence[Delivery] = ()
    ) -> list[Claimed]:
        """Claims a group of this account's queued rows in one statement (each with its own
        Message-ID), in the order given; rows that are not claimable are left out. The
        previous group's plain successes (`finished`, see all_plain) are recorded by the same
        statement."""
        message_ids = [make_message_id(self.account.sending_domain) for _ in recipient_ids]
        values = {
            "ids": recipient_ids,
            "message_ids": message_ids,
            "account_id": self.account.id,
            "now": _now(),
            "holder": self.holder,
        }
        if finished:
            values.update(self._finish_values(finished))
            rows = _FINISH_SENT_THEN_CLAIM_GROUP.execute(self.session, values)
        else:
            rows = _CLAIM_GROUP.execute(self.session, values)
        by_id = {row.id: row for row in rows}
        # Before the commit: a commit the server made but whose answer was lost (the
        # connection cut just then) leaves these `sending`.
        self.claimed.update({i: row.message_id for i, row in by_id.items()})
        return [
            Claimed(
                sent=Sent(
                    recipient_id=row.id,
                    campaign_id=row.campaign_id,
                    email=row.email,
                    domain=row.domain,
                    attempts=row.attempts,
                    message_id=row.message_id,
                ),
                fields=row.fields or {},
                reservation=row.reservation,
                suppressed=row.suppressed,
            )
            for recipient_id in recipient_ids
            if (row := by_id.get(recipient_id)) is not None
        ]

    def write(self, deliveries: list[Delivery]) -> bool:
        """Records a group's outcomes, in order: plain successes in one statement, the rest
        through outcomes.record. True when one of them took the account out of rotation."""
        plain: list[Delivery] = []
        stops = False
        for delivery in deliveries:
            if self.can_fast_finish(delivery):
                plain.append(delivery)
            elif self.record(delivery).stops_account:
                stops = True
        if plain:
            _FINISH_SENT_GROUP.execute(self.session, {**self._finish_values(plain), "now": _now()})
        return stops

    def all_plain(self, deliveries: list[Delivery]) -> bool:
        """Every outcome is a plain success, which never takes the account out of rotation:
        they can be written by the next claim's statement."""
        return all(self.can_fast_finish(d) for d in deliveries)

    def _finish_values(self, plain: Sequence[Delivery]) -> dict[str, Any]:
        return {
            "done_ids": [d.sent.recipient_id for d in plain],
            "client_ids": [self.campaign(d.sent.campaign_id).client_id for d in plain],
            "codes": [d.reply.code for d in plain],
            "replies": [d.reply.text for d in plain],
            "data": [event_data(d.sent, d.reply, d.verdict) for d in plain],
        }

    def unclaim(self, claimed: list[Claimed]) -> None:
        """Claimed rows that were not attempted go back to queued, still held."""
        self._unclaim({c.sent.recipient_id: c.sent.message_id for c in claimed})

    def unclaim_unattempted(self) -> int:
        """Every row this batch claimed and never handed to the SMTP server back to queued
        (after a failure mid-batch: a row claimed and then not sent must not stay
        `sending`, which recovery would call `unknown`); a row no longer `sending` under
        this batch's claim is left alone. Returns how many it asked for."""
        unsent = {i: m for i, m in self.claimed.items() if i not in self.attempted}
        self._unclaim(unsent)
        return len(unsent)

    def _unclaim(self, message_ids: dict[int, str]) -> None:
        """`message_ids`: recipient id -> the Message-ID of this batch's claim of it."""
        if message_ids:
            self.session.execute(
                UNCLAIM,
                {"ids": list(message_ids), "message_ids": list(message_ids.values()),
                 "holder": self.holder, "now": _now()},
            )  # fmt: skip

    def suppress(self, claimed: Claimed) -> None:
        self.session.execute(SUPPRESS_CLAIMED, {"id": claimed.sent.recipient_id, "now": _now()})
        self.release(claimed)

    def campaign(self, campaign_id: int) -> Campaign:
        if campaign_id not in self.campaigns:
            campaign = self.session.get(Campaign, campaign_id)
            assert campaign is not None  # the claim joined it
            self.campaigns[campaign_id] = campaign
        return self.campaigns[campaign_id]

    def deliver(
        self, claimed: Claimed, result: BatchResult, *, then: Claimed | None = None
    ) -> Delivery:
        """Sends one claimed message; its outcome is written with the next commit. `then`:
        the message to be delivered next if this one succeeds; its envelope goes out with
        this one's data (rotator.transport)."""
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
            next_message = self._next_message(then)
            self.attempted.add(sent.recipient_id)
            reply = smtp_pool().send(
                str(self.account.id),
                self.endpoint,
                self.account.email,
                sent.email,
                data,
                then=next_message,
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
                "smtp_stage": reply.stage.value if reply.stage else None,
                "outcome": verdict.outcome.value,
                "reason": verdict.reason,
            },
        )
        if verdict.outcome in (Outcome.ACCOUNT_PAUSED, Outcome.ACCOUNT_DISABLED):
            self.release(claimed)
            smtp_pool().close(str(self.account.id))
        pause_until = self._quota_frees_at() if verdict.pause_until_window_frees else None
        return Delivery(sent, reply, verdict, pause_until)

    def can_fast_finish(self, delivery: Delivery) -> bool:
        """A plain success on an account with no failure streak to reset."""
        return delivery.verdict.outcome is Outcome.SENT and self.failures_known_zero

    def record(self, delivery: Delivery) -> Recorded:
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

    def _next_message(self, then: Claimed | None) -> NextMessage | None:
        if then is None:
            return None
        try:
            data = self._build(then)
        except (TemplateError, ValueError) as exc:
            self._built_ahead = (then.sent.message_id, exc)
            return None
        except Exception:  # whatever it is, it comes up at that message's own turn
            log.debug("send.build_ahead_failed", exc_info=True)
            return None
        self._built_ahead = (then.sent.message_id, data)
        return NextMessage(self.account.email, then.sent.email, data)

    def _build(self, claimed: Claimed) -> bytes:
        """The one builder, shared with the web UI's preview (app.services.outgoing). A
        message built ahead is used once, by its Message-ID (a row claimed again gets a
        new one)."""
        sent = claimed.sent
        ahead, self._built_ahead = self._built_ahead, None
        if ahead is not None and ahead[0] == sent.message_id:
            if isinstance(ahead[1], Exception):
                raise ahead[1]
            return ahead[1]
        return build_outgoing(
            self.settings,
            self.campaign(sent.campaign_id),
            self.account,
            recipient_id=sent.recipient_id,
            email=sent.email,
            fields=claimed.fields,
            message_id=sent.message_id,
        ).raw

    def _quota_frees_at(self) -> datetime | None:
        """A provider's daily quota is spent: pause until our own day window for the account
        frees its oldest send (the provider counts a rolling day as well)."""
        window = account_day_window(self.account, self.settings)
        used = self.limiter.used([window])[0]
        if used == 0:
            return None
        frees = self.limiter.frees_at(replace(window, limit=used))
        return datetime.fromtimestamp(frees, UTC) if frees else None

    def take_places_now(self, late: list[tuple[int, Held]]) -> set[int]:
        """Sends reached after their moment: the ids whose reservation moved to now (one
        round trip for them all); the others must be placed again."""
        moves = []
        free: set[int] = set()
        for recipient_id, held in late:
            if held.reservation is None:
                free.add(recipient_id)
                continue
            windows = self._windows(held.campaign_id, held.domain)
            moves.append((recipient_id, windows, held.reservation))
        try:
            decisions = self.limiter.move_many([(w, token) for _, w, token in moves])
        except (RedisError, OSError) as exc:
            # The windows cannot say: the late ones are placed again once Redis is back.
            log.warning("send.move_failed", extra={"count": len(moves), "error": str(exc)})
            return free
        return free | {i for (i, _, _), d in zip(moves, decisions, strict=True) if d.allowed}

    def _windows(self, campaign_id: int, domain: str) -> list[Window]:
        """Every window a send of this account to `domain` for the campaign is in."""
        key = (campaign_id, domain)
        if key not in self._windows_of:
            campaign = self.campaign(campaign_id)
            self._windows_of[key] = self.limits.windows(
                account=self.account,
                recipient_domain=domain,
                campaign_id=campaign.id,
                campaign_daily_cap=campaign.daily_cap,
            )
        return self._windows_of[key]

    def release(self, claimed: Claimed) -> None:
        """Gives back the limiter reservation of a message that never reached a server."""
        if claimed.reservation is None:
            return
        windows = self._windows(claimed.sent.campaign_id, claimed.sent.domain)
        try:
            self.limiter.release(windows, claimed.reservation)
        except (RedisError, OSError) as exc:  # counted until its windows pass: never too few
            log.warning("send.release_failed", extra={"count": 1, "error": str(exc)})


def _now() -> datetime:
    return datetime.now(UTC)
