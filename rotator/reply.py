"""The SMTP reply as the rest of rotator sees it: code, enhanced status code, one line of text."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TEXT = 500

# RFC 3463 enhanced status code at the start of a reply line: class.subject.detail
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
# "550-5.1.1 ..." / "550 5.1.1 ..." when a caller hands us raw reply lines
_CODE_PREFIX = re.compile(r"^\d{3}(?:[ -]|$)")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SmtpReply:
    code: int | None
    enhanced: str | None
    text: str

    @classmethod
    def parse(cls, code: int, message: bytes | str) -> SmtpReply:
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
        return cls(code=code, enhanced=enhanced, text=text[:MAX_TEXT])

    @classmethod
    def from_error(cls, kind: str, detail: str) -> SmtpReply:
        """A reply that never came: the network or TLS failed, or the outcome was lost."""
        text = _SPACES.sub(" ", f"{kind}: {detail}").strip()
        return cls(code=None, enhanced=None, text=text[:MAX_TEXT])

    @property
    def error_kind(self) -> str | None:
        """ "timeout", "outcome_lost", ... for replies made by from_error, else None."""
        if self.code is not None:
            return None
        return self.text.partition(":")[0]

    def __str__(self) -> str:
        head = " ".join(str(p) for p in (self.code, self.enhanced) if p is not None)
        return f"{head} {self.text}".strip()
