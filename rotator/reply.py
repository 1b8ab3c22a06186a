"""The SMTP reply as the rest of rotator sees it: code, enhanced status code, one line of text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_TEXT = 500

# RFC 3463 enhanced status code at the start of a reply line: class.subject.detail
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
# "550-5.1.1 ..." / "550 5.1.1 ..." when a caller hands us raw reply lines
_CODE_PREFIX = re.compile(r"^\d{3}(?:[ -]|$)")
_SPACES = re.compile(r"\s+")


class Stage(StrEnum):
    """Where in the SMTP dialogue a reply (or a failure) arrived: what a refusal is about
    depends on it (a 5.7.1 at RCPT is about the recipient, after DATA about the content)."""

    CONNECT = "connect"  # TCP connect and the 220 greeting
    EHLO = "ehlo"
    TLS = "tls"  # STARTTLS or the implicit-TLS handshake
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"  # the DATA command and the message bytes, before the final dot
    DOT = "dot"  # the reply to the final dot: the server may have taken the message
    NOOP = "noop"  # health check or idle probe


# Stages of the session itself: a failure there is about the account (or its server).
SESSION_STAGES = frozenset({Stage.CONNECT, Stage.EHLO, Stage.TLS, Stage.AUTH, Stage.MAIL})


@dataclass(frozen=True)
class SmtpReply:
    code: int | None
    enhanced: str | None
    text: str
    stage: Stage | None = None

    @classmethod
    def parse(cls, code: int, message: bytes | str, stage: Stage | None = None) -> SmtpReply:
        """Build a reply from smtplib's (code, message).

        smtplib strips the code from every line and joins them with "\\n"; raw
        multi-line replies ("550-5.1.1 ...\\n550 5.1.1 ...") are accepted too.
        Continuation lines repeat the enhanced code (Gmail does), so it is kept once.
        """
        raw = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        enhanced: str | None = None
        parts: list[str] = []
        prefix = str(code)
        for line in raw.splitlines():
            line = line.strip()
            if line.startswith(prefix):
                line = _CODE_PREFIX.sub("", line, count=1)
            found = _ENHANCED.match(line)
            if found:
                enhanced = enhanced or found.group(0)
                line = line[found.end() :].strip()
            if line:
                parts.append(line)
        text = _SPACES.sub(" ", " ".join(parts)).strip()
        return cls(code=code, enhanced=enhanced, text=text[:MAX_TEXT], stage=stage)

    @classmethod
    def from_error(cls, kind: str, detail: str, stage: Stage | None = None) -> SmtpReply:
        """A reply that never came: the network or TLS failed, the outcome was lost, or
        the address could not go on the wire ("address_unencodable")."""
        text = _SPACES.sub(" ", f"{kind}: {detail}").strip()
        return cls(code=None, enhanced=None, text=text[:MAX_TEXT], stage=stage)

    def at(self, stage: Stage) -> SmtpReply:
        """This reply, placed at `stage` unless it already has one."""
        if self.stage is not None:
            return self
        return SmtpReply(self.code, self.enhanced, self.text, stage)

    @property
    def error_kind(self) -> str | None:
        """ "timeout", "outcome_lost", ... for replies made by from_error, else None."""
        if self.code is not None:
            return None
        return self.text.partition(":")[0]

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.code, self.enhanced) if p is not None)
        return f"{head} {self.text}".strip()
