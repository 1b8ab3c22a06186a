"""The send path over a server that offers PIPELINING: within a claimed group, each message's
data goes out with the next message's envelope (rotator.transport `then`), and never past
the group: the next group's rows are claimed, durably, before anything of them is written.
A message that ends its group abandons the envelope written after it; that row goes back
unattempted and is sent once, later."""

from __future__ import annotations

from tests.pipeline import dispatch, send_batches, smtp_account
from tests.smtp_server import ScriptedSMTPServer
from tests.test_send_groups import _emails, _rows


def _read_with_data_of(server: ScriptedSMTPServer, message_id: str) -> bytes:
    (read,) = [r for r in server.reads if f"Message-ID: {message_id}".encode() in r]
    return read


def _ends_with_envelope_for(read: bytes, email: str) -> bool:
    return read.lower().endswith(f"rcpt to:<{email}>\r\ndata\r\n".encode())


def test_envelopes_go_ahead_within_a_group_and_never_past_it(app, factory, pipelining, groups_of_3):
    factory.create_account(**smtp_account(pipelining))
    emails = _emails(7)
    factory.create_running_campaign(emails)
    send_batches(app, dispatch(app))
    rows = _rows()
    assert [rows[e].status for e in emails] == ["sent"] * 7
    assert [len(pipelining.messages_for(e)) for e in emails] == [1] * 7
    for position, email in enumerate(emails):
        read = _read_with_data_of(pipelining, rows[email].message_id)
        if position % 3 < 2 and position + 1 < len(emails):  # the group goes on
            assert _ends_with_envelope_for(read, emails[position + 1]), read
        else:  # the group's last: the next group is claimed before its envelope goes
            assert read.endswith(b"\r\n.\r\n"), read
    assert pipelining.connections == 1


def test_a_message_refused_at_the_dot_abandons_the_next_envelope_and_that_row_goes_later(
    app, factory, pipelining, groups_of_3
):
    factory.create_account(**smtp_account(pipelining))
    emails = _emails(5)
    factory.create_running_campaign(emails)
    pipelining.fail_all(554, "5.7.1 Message rejected: content", times=1)  # r0's data
    send_batches(app, dispatch(app))
    rows = _rows()
    assert [rows[e].status for e in emails] == ["failed", "sent", "sent", "sent", "sent"]
    # r1's envelope went with r0's data and was abandoned with its connection: r1 went
    # back unattempted and was claimed again (one attempt, one message, a new Message-ID).
    assert [rows[e].attempts for e in emails] == [1] * 5
    assert [len(pipelining.messages_for(e)) for e in emails] == [0, 1, 1, 1, 1]
    assert pipelining.attempts(emails[1]) == 2  # RCPT seen twice, data once
    assert pipelining.connections == 2


def test_a_suppressed_row_is_skipped_by_the_envelope_written_ahead(
    app, factory, pipelining, groups_of_3
):
    factory.create_account(**smtp_account(pipelining))
    emails = _emails(3)
    campaign = factory.create_running_campaign(emails)
    dispatched = dispatch(app)
    factory.suppress(emails[1], client_id=campaign.client_id)
    send_batches(app, dispatched)
    rows = _rows()
    assert [rows[e].status for e in emails] == ["sent", "suppressed", "sent"]
    assert pipelining.attempts(emails[1]) == 0
    read = _read_with_data_of(pipelining, rows[emails[0]].message_id)
    assert _ends_with_envelope_for(read, emails[2]), read
