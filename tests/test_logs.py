"""Log lines as shipped (app.logs.build_handler, JSON): a real send through the in-process
send path leaves lines with the account, campaign, recipient domain and SMTP code, and no
line holds a recipient's local part, the account's password, the subject or the body."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.logs import build_handler
from tests.pipeline import run_until_idle, smtp_account
from tests.smtp_server import ScriptedSMTPServer

PASSWORD = "Smtp-Passw0rd-Kq71"
SUBJECT = "Quarterly numbers for {{ first_name | default('you') }} 5521"
BODY = "Private body text 8812 for {{ first_name | default('you') }}"


@pytest.fixture
def json_lines(settings) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = build_handler(settings.model_copy(update={"log_format": "json"}), stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_a_send_logs_its_fields_and_no_address_secret_or_body(app, factory, json_lines, settings):
    with ScriptedSMTPServer(auth=("mailer", PASSWORD)) as server:
        server.fail_rcpt(
            "nobody.here@bounce.example", 550, "5.1.1 <nobody.here@bounce.example> unknown"
        )
        account = factory.create_account(
            **smtp_account(server), username="mailer", password=PASSWORD, per_minute_limit=1000
        )
        campaign = factory.create_running_campaign(
            ["alice.secretive@dest.example", "nobody.here@bounce.example"],
            subject=SUBJECT,
            body_text=BODY,
        )
        run_until_idle(app)
        assert len(server.received) == 1, json_lines.getvalue()  # the message really went

    lines = _lines(json_lines)
    outcomes = [line for line in lines if line["message"] == "send.outcome"]
    assert {line["recipient_domain"] for line in outcomes} == {"dest.example", "bounce.example"}
    for line in outcomes:
        assert line["account_id"] == account.id and line["campaign_id"] == campaign.id
        assert line["level"] == "INFO" and "time" in line and line["logger"]
        assert "smtp_stage" in line  # a fixed key: present on every line
    assert {line["smtp_code"] for line in outcomes} == {250, 550}
    text = json_lines.getvalue()
    for forbidden in (
        "alice.secretive",
        "nobody.here",
        PASSWORD,
        "5521",
        "8812",
        settings.secret_key.get_secret_value(),
        settings.credentials_key.get_secret_value(),
    ):
        assert forbidden not in text, forbidden


def test_secrets_bodies_and_addresses_are_filtered_from_any_line(json_lines, settings):
    log = logging.getLogger("app.services.example")
    try:
        raise ConnectionError(
            "cannot reach redis://:hunter2pass@10.0.0.5:6379/0 for bob.x@corp.example"
        )
    except ConnectionError:
        log.exception(
            "import.failed bob.x@corp.example",
            extra={
                "password": "p4ssw0rd-123",
                "api_key": "SG.abcdefghijklmnopqrstu.vwxyzABCDEFGHIJKLMNOP",
                "body_html": "<p>hello</p>",
                "note": (
                    f"secret_key={settings.secret_key.get_secret_value()} to carol@corp.example"
                ),
                "recipient_domain": "corp.example",
            },
        )
    [line] = _lines(json_lines)
    text = json_lines.getvalue()
    for forbidden in ("hunter2pass", "p4ssw0rd-123", "SG.abcdef", "<p>hello</p>", "bob.x", "carol"):
        assert forbidden not in text, forbidden
    assert settings.secret_key.get_secret_value() not in text
    assert line["password"] == "[Filtered]" and line["body_html"] == "[Filtered]"
    assert line["recipient_domain"] == "corp.example"
    assert "corp.example" in line["message"] and "ConnectionError" in line["exc_info"]


def test_the_dispatchers_tick_lines_are_debug_and_send_lines_stay_info(settings):
    def emit(level: str) -> str:
        stream = io.StringIO()
        handler = build_handler(settings.model_copy(update={"log_level": level}), stream)
        for name, message in (
            ("celery.app.trace", "Task sendfleet.dispatch[1f2e] succeeded in 0.004s: None"),
            ("celery.worker.strategy", "Task sendfleet.dispatch[1f2e] received"),
            ("celery.beat", "Scheduler: Sending due task dispatch (sendfleet.dispatch)"),
            ("celery.app.trace", "Task sendfleet.send_batch[9a9a] succeeded in 0.2s: None"),
        ):
            record = logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)
            if handler.filter(record):
                handler.handle(record)
        return stream.getvalue()

    at_info = emit("INFO")
    assert "sendfleet.dispatch" not in at_info and "sendfleet.send_batch" in at_info
    at_debug = emit("DEBUG")
    assert (
        at_debug.count("sendfleet.dispatch") == 3
        and "INFO celery.app.trace Task sendfleet.send" in at_debug
    )
    assert "DEBUG celery.beat Scheduler" in at_debug
