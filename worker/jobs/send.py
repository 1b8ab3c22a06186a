"""The send path: the recipients the dispatcher gave one account, sent over one pooled SMTP
connection, a small group claimed at a time.

For each group of up to SEND_CLAIM_GROUP rows, in the batch's order:

1. each row waits for the moment the dispatcher placed it at (worker.jobs.send_slots); one
   reached late takes its place now if the windows allow it, or goes back to be placed
   again;
2. `queued -> sending` for the group by one conditional UPDATE that also checks each
   campaign is running and the account active; each row's Message-ID is stored with the
   claim, and the claim is committed BEFORE any SMTP, together with the previous group's
   outcomes (a row not claimed: a duplicate task or another worker got there first, or the
   campaign or account stopped and the rest goes back);
3. suppressed rows (re-checked in the same statement) are dropped; each other message is
   rendered in the sandbox, built and sent;
4. the replies are classified and written with the next group's claim (plain successes in
   one statement). A message whose outcome is anything but a plain success ends its group:
   the rest of the group goes back to queued, unattempted, and that outcome is written (and
   may stop the account) before anything else is sent.

So at most SEND_CLAIM_GROUP rows per process are ever `sending`: a killed worker leaves at
most that many `unknown` per process, never a duplicate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.extensions import db
from app.settings import Settings
from rotator.classify import Outcome
from worker.jobs.send_release import after_outage, hand_back, release_held
from worker.jobs.send_slots import Slots, Timing
from worker.jobs.sender import Claimed, Delivery, Sender

log = logging.getLogger(__name__)

# A group's first row waits for its moment; others join the group only if theirs has come.
_JOIN_EARLY_SECONDS = 0.005


@dataclass
class BatchResult:
    outcomes: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    handed_back: int = 0
    # Of those handed back: reached after their moment had passed, placed again.
    late: int = 0

    def count(self, key: str) -> None:
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


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
    # trip after every commit.
    with (
        db.engine.connect() as connection,
        Session(bind=connection, expire_on_commit=False) as session,
    ):
        return _send_batch(session, settings, account_id, recipient_ids)


def _send_batch(
    session: Session, settings: Settings, account_id: int, recipient_ids: list[int]
) -> BatchResult:
    result = BatchResult()
    sender = Sender.load(session, settings, account_id)
    if sender is None:
        result.handed_back = hand_back(session, settings, account_id, recipient_ids)
        session.commit()
        return result
    run = _Run(session, settings, sender, result, list(recipient_ids))
    try:
        run.slots = Slots.hold(session, settings, account_id, recipient_ids, sender.holder)
        session.commit()
        run.send_all()
    except OperationalError:
        # The database went away: nothing more is sent; once it is back (within the send
        # lease) the outcomes held in memory are written, the rows claimed but never sent
        # go back (a claim whose commit the server made while the answer was lost among
        # them) and the rest goes back to pending.
        log.warning("send.database_unreachable", extra={"account_id": account_id})
        try:
            unwritten = run.unwritten
            result.handed_back += after_outage(
                session, settings, lambda: _settle(sender, unwritten), account_id, recipient_ids
            )
        except BaseException:
            release_held(session, sender.holder, recipient_ids)
            raise
    except BaseException:
        session.rollback()
        _write_what_was_sent(session, sender, run.unwritten)
        release_held(session, sender.holder, recipient_ids)
        raise
    return result


def _settle(sender: Sender, unwritten: list[Delivery]) -> None:
    """What a batch cut short owes the database: the replies the servers already gave,
    and every row it claimed without sending back to queued."""
    if unwritten:
        sender.write(unwritten)
    sender.unclaim_unattempted()


def _write_what_was_sent(session: Session, sender: Sender, unwritten: list[Delivery]) -> None:
    """After an error of ours (or Redis's) mid-batch, the replies the servers already gave
    are still written when the database answers, so those rows are not left to become
    `unknown`, and the rows claimed but never sent go back to queued (then to pending with
    the rest of the batch, by recovery, once released)."""
    try:
        _settle(sender, unwritten)
        session.commit()
    except Exception:  # the original error is the news; recovery has these rows
        session.rollback()
        log.warning("send.outcomes_unwritten", extra={"count": len(unwritten)}, exc_info=True)


@dataclass
class _Run:
    session: Session
    settings: Settings
    sender: Sender
    result: BatchResult
    waiting: list[int]
    slots: Slots = field(default_factory=lambda: Slots({}, 0.0))
    # SMTP outcomes held in memory until the commit that writes them.
    unwritten: list[Delivery] = field(default_factory=list)

    @property
    def account_id(self) -> int:
        return self.sender.account.id

    def send_all(self) -> None:
        while self.waiting:
            # Nothing held in memory while waiting for the next moment.
            waits = self.slots.delay(self.waiting[0]) > _JOIN_EARLY_SECONDS
            if self.unwritten and waits and self._write_stops():
                return
            if waits:
                self.session.commit()
                self.unwritten = []
            group = self._next_group()
            if group is None:
                return
            if not group:
                continue
            # Plain successes go with the claim, in one statement; any other outcome is
            # judged (and may stop the account) before this group is claimed.
            finished = self.unwritten if self.sender.all_plain(self.unwritten) else []
            if not finished and self._write_stops(group):
                return
            claimed = self.sender.claim_group(group, finished=finished)
            self.session.commit()  # the claims (and the last outcomes) are durable before SMTP
            self.unwritten = []
            if self._hand_back_unclaimed(group, claimed):
                self._deliver(claimed)
                break
            self._deliver(claimed)
        if not self._write_stops():
            self.session.commit()
        self.unwritten = []

    def _next_group(self) -> list[int] | None:
        """Up to SEND_CLAIM_GROUP rows whose moment has come (the first one waited for);
        late ones that cannot take their place now are handed back. None: the rest of the
        batch was published again for later."""
        group: list[int] = []
        late: list[int] = []
        while self.waiting and len(group) + len(late) < self.settings.send_claim_group:
            recipient_id = self.waiting[0]
            first = not group and not late
            if not first and self.slots.delay(recipient_id) > _JOIN_EARLY_SECONDS:
                break
            timing = self.slots.timing(recipient_id)
            if timing is Timing.EARLY:
                if not first:
                    break
                release_held(self.session, self.sender.holder, self.waiting)
                self.slots.publish_later(self.account_id, self.waiting)
                self.waiting = []
                return None
            self.waiting.pop(0)
            (late if timing is Timing.LATE else group).append(recipient_id)
        if late:
            placed = self.sender.take_places_now([(i, self.slots.rows[i]) for i in late])
            again = [i for i in late if i not in placed]
            if again:
                handed = hand_back(self.session, self.settings, self.account_id, again)
                self.result.handed_back += handed
                self.result.late += handed
                self.session.commit()
            group = [i for i in [*group, *late] if i not in again]
        return group

    def _write_stops(self, group: list[int] | None = None) -> bool:
        """Writes the outcomes held in memory; when one took the account out of rotation,
        the rows not sent yet (`group` and the rest) go back and the batch ends."""
        if not self.unwritten:
            return False
        stops = self.sender.write(self.unwritten)
        if not stops:
            return False
        self.session.commit()
        self.unwritten = []
        rest = [*(group or []), *self.waiting]
        self.waiting = []
        self.result.handed_back += hand_back(self.session, self.settings, self.account_id, rest)
        self.session.commit()
        return True

    def _hand_back_unclaimed(self, group: list[int], claimed: list[Claimed]) -> bool:
        """Rows of the group not claimed: a duplicate task or another worker had them, or
        (still queued for this account) their campaign or the account stopped; then the
        rest of the batch waits too. True in that case: this group is the last."""
        taken = {c.sent.recipient_id for c in claimed}
        missing = [i for i in group if i not in taken]
        if not missing:
            return False
        handed = hand_back(self.session, self.settings, self.account_id, missing)
        self.result.duplicates += len(missing) - handed
        if not handed:
            self.session.commit()
            return False
        self.result.handed_back += handed
        self.result.handed_back += hand_back(
            self.session, self.settings, self.account_id, self.waiting
        )
        self.waiting = []
        self.session.commit()
        return True

    def _deliver(self, claimed: list[Claimed]) -> None:
        for position, row in enumerate(claimed):
            if row.suppressed:
                self.sender.suppress(row)
                self.result.count("suppressed")
                continue
            then = next((c for c in claimed[position + 1 :] if not c.suppressed), None)
            delivery = self.sender.deliver(row, self.result, then=then)
            self.unwritten.append(delivery)
            if delivery.verdict.outcome is not Outcome.SENT:
                # Judged before anything else goes: the rest of the group, unattempted,
                # returns to the front of the batch.
                rest = [c for c in claimed[position + 1 :] if not c.suppressed]
                skipped = [c for c in claimed[position + 1 :] if c.suppressed]
                for row_ in skipped:
                    self.sender.suppress(row_)
                    self.result.count("suppressed")
                self.sender.unclaim(rest)
                self.waiting[:0] = [c.sent.recipient_id for c in rest]
                return
