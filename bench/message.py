"""build_message speed, against the stdlib EmailMessage building the same message.

    .venv/bin/python bench/message.py

Prints microseconds per message for a typical outreach message (ASCII and non-ASCII
variants, text + HTML), and the ratio to email.message.EmailMessage + as_bytes().
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rotator.message import MessageSpec, build_message, make_message_id

TEXT = "Hi Bob,\n\nI noticed your team is hiring engineers. " * 4 + "\n\nBest,\nAnn\n"
HTML = (
    "<html><body>"
    + "<p>Hi Bob, I noticed your team is hiring engineers.</p>" * 4
    + "</body></html>"
)

ASCII = MessageSpec(
    from_email="ann@send.example.com",
    from_name="Ann Smith",
    to_email="bob@example.org",
    subject="Quick question about hiring at Example",
    text=TEXT,
    html=HTML,
    unsubscribe_url="https://app.example.com/u/eyJyIjoxMjM0NTYsImMiOjQyfQ.abcdef",
    unsubscribe_mailto="mailto:unsubscribe@send.example.com?subject=unsubscribe-abcdef",
    company_address="ACME Ltd\n1 Main Street\nSpringfield 12345",
    message_id=make_message_id("send.example.com"),
)
UNICODE = MessageSpec(
    **{
        **ASCII.__dict__,
        "from_name": "Zoë Müller",
        "subject": "Grüße aus Köln — eine kurze Frage",
        "text": TEXT.replace("Bob", "Jörg"),
        "html": HTML.replace("Bob", "Jörg"),
    }
)


def stdlib(spec: MessageSpec) -> bytes:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((spec.from_name or "", spec.from_email))
    msg["To"] = spec.to_email
    msg["Subject"] = spec.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = spec.message_id
    msg["List-Unsubscribe"] = f"<{spec.unsubscribe_url}>, <{spec.unsubscribe_mailto}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(spec.text + "\n-- \n" + spec.company_address)
    msg.add_alternative(spec.html or "", subtype="html")
    return msg.as_bytes()


def per_message_us(fn: Callable[[MessageSpec], bytes], spec: MessageSpec, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            fn(spec)
        done += 100
    return elapsed / done * 1e6


def main() -> None:
    for label, spec in (("ascii", ASCII), ("unicode", UNICODE)):
        ours = per_message_us(build_message, spec, 2.0)
        theirs = per_message_us(stdlib, spec, 2.0)
        print(
            f"{label:8} build_message {ours:7.1f} us/msg   EmailMessage {theirs:7.1f} us/msg"
            f"   ratio {ours / theirs:.2f}"
        )


if __name__ == "__main__":
    main()
