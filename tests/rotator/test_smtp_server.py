"""The test server itself: others' end-to-end tests rely on its counts."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import textwrap

from tests.smtp_server import ScriptedSMTPServer

CLIENT = textwrap.dedent(
    """
    import smtplib, sys
    port = int(sys.argv[1])
    with smtplib.SMTP("127.0.0.1", port, local_hostname="worker.test", timeout=10) as smtp:
        for n in range(3):
            data = f"Message-ID: <p{n}@example.com>\\r\\nSubject: {n}\\r\\n\\r\\nhi\\r\\n"
            smtp.sendmail("ann@example.com", ["Bob@Example.org"], data)
        try:
            smtp.sendmail("ann@example.com", ["gone@example.org"], "Subject: x\\r\\n\\r\\nx\\r\\n")
        except smtplib.SMTPRecipientsRefused as exc:
            print(exc.recipients["gone@example.org"][0])
    """
)


def test_a_client_in_another_process_is_counted_exactly(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.fail_rcpt("gone@example.org", 550, "5.1.1 no such user")
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, str(smtp_server.port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.strip() == "550"
    assert smtp_server.connections == 1
    assert len(smtp_server.messages_for("bob@example.org")) == 3
    assert [len(smtp_server.messages_with_id(f"<p{n}@example.com>")) for n in range(3)] == [1] * 3
    assert smtp_server.messages_for("gone@example.org") == []
    assert smtp_server.attempts("gone@example.org") == 1
    assert smtp_server.received[0].envelope_from == "ann@example.com"


def test_fail_all_times_and_reset(smtp_server: ScriptedSMTPServer) -> None:
    smtp_server.fail_all(451, "4.3.0 try later", times=1)
    with smtplib.SMTP("127.0.0.1", smtp_server.port, local_hostname="t", timeout=5) as smtp:
        smtp.ehlo()
        assert smtp.mail("a@example.com")[0] == 250
        smtp.rcpt("b@example.org")
        assert smtp.data(b"Subject: 1\r\n\r\nx\r\n")[0] == 451
        smtp.rset()
        smtp.sendmail("a@example.com", ["b@example.org"], b"Subject: 2\r\n\r\nx\r\n")
    assert len(smtp_server.received) == 1
    smtp_server.reset()
    assert (smtp_server.received, smtp_server.connections) == ([], 0)
    assert smtp_server.attempts("b@example.org") == 0
