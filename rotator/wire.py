"""The envelope on the wire: MAIL FROM alone, or, where the server offers PIPELINING
(RFC 2920), MAIL FROM, RCPT TO and DATA in one write with their replies read in order; its
replies up to DATA's 354, and a refusal's reset (what is read back after a pipelined one).
Where the connection cannot go on, `drop` is called: the pool (rotator/transport.py) owns
the connections."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable

from rotator.envelope import WireAddress
from rotator.reply import SmtpReply, Stage
from rotator.session import Failed, Progress, step

__all__ = [
    "ahead_commands",
    "begin",
    "discard_replies",
    "pipelined_envelope",
    "quote_address",
    "readable",
    "refused",
    "stepwise_envelope",
]


# A dot-atom local part at a plain domain or address literal (RFC 5321 4.1.2): what
# smtplib.quoteaddr turns into "<address>" unchanged, without parsing it as a header
# (email.utils.parseaddr, about 17 us an address, two a message).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[A-Za-z0-9.:]+\])"
)


def readable(code: int) -> bool:
    return 200 <= code <= 599


def _mail_options(
    smtp: smtplib.SMTP, sender: WireAddress, target: WireAddress, data: bytes
) -> list[str]:
    options = []
    if sender.needs_smtputf8 or target.needs_smtputf8:
        options.append("SMTPUTF8")  # checked as offered before MAIL
    if not data.isascii() and smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


def begin(
    smtp: smtplib.SMTP,
    sender: WireAddress,
    target: WireAddress,
    data: bytes,
    *,
    written: bool = False,
) -> tuple[bool, int, bytes]:
    """MAIL FROM, and with PIPELINING offered (RFC 2920) RCPT TO and DATA in the same
    write; returns (pipelined, MAIL's code, MAIL's text). `written`: this envelope already
    went out after the last message's data (ahead_commands, checked by the caller); only
    its replies are read. Network failures raise Failed."""
    if written:
        code, message = step(smtp, smtp.getreply)
        return True, code, message
    options = _mail_options(smtp, sender, target, data)
    if not smtp.has_extn("pipelining"):
        code, message = step(smtp, lambda: smtp.mail(sender.address, options))
        return False, code, message
    commands = _envelope_commands(smtp, sender, target, options)

    def write_and_read() -> tuple[int, bytes]:
        smtp.send(commands)
        return smtp.getreply()

    code, message = step(smtp, write_and_read)
    return True, code, message


def ahead_commands(
    smtp: smtplib.SMTP, sender: WireAddress, target: WireAddress, data: bytes
) -> bytes | None:
    """The next message's MAIL FROM, RCPT TO and DATA, to go out in the same write as this
    message's data (RFC 2920 3.1: message content may be the first command of a group), or
    None where that is not possible: no PIPELINING, or SMTPUTF8 needed (its command
    encoding is set per transaction)."""
    if not smtp.has_extn("pipelining") or sender.needs_smtputf8 or target.needs_smtputf8:
        return None
    options = _mail_options(smtp, sender, target, data)
    return _envelope_commands(smtp, sender, target, options).encode("ascii")


def _envelope_commands(
    smtp: smtplib.SMTP, sender: WireAddress, target: WireAddress, options: list[str]
) -> str:
    """MAIL FROM, RCPT TO and DATA as smtplib's mail(), rcpt() and putcmd() write them."""
    optionlist = ""
    if options and smtp.does_esmtp:
        if any(option.lower() == "smtputf8" for option in options):
            smtp.command_encoding = "utf-8"  # as mail() does; SMTPUTF8 checked as offered
        optionlist = " " + " ".join(options)
    lines = (
        f"MAIL FROM:{quote_address(sender.address)}{optionlist}",
        f"RCPT TO:{quote_address(target.address)}",
        "DATA",
    )
    for line in lines:
        if "\r" in line or "\n" in line:
            escaped = line.replace("\n", "\\n").replace("\r", "\\r")
            raise ValueError(
                f"command and arguments contain prohibited newline characters: {escaped}"
            )
    return "".join(f"{line}\r\n" for line in lines)


def quote_address(address: str) -> str:
    """The address as an SMTP path, "<address>", as smtplib.quoteaddr writes it."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def discard_replies(smtp: smtplib.SMTP, pending: int) -> bool:
    """Read the `pending` replies still due of a pipelined envelope (the last one DATA's),
    ending the empty data with a lone dot if DATA got 354. False when the connection is
    not fit for another transaction afterwards."""
    code = 0
    try:
        for _ in range(pending):
            code, _ = step(smtp, smtp.getreply)
            if code == 421 or not readable(code):
                return False
        if code == 354:
            code, _ = step(smtp, lambda: _lone_dot(smtp))
    except Failed:
        return False
    return code != 421 and readable(code)


def _lone_dot(smtp: smtplib.SMTP) -> tuple[int, bytes]:
    """End the (empty) data of a DATA that should not have been accepted."""
    smtp.send(b".\r\n")
    return smtp.getreply()


def stepwise_envelope(
    smtp: smtplib.SMTP,
    code: int,
    message: bytes,
    target: WireAddress,
    progress: Progress,
    drop: Callable[[], None],
) -> SmtpReply | None:
    """Given MAIL's reply, RCPT and DATA one at a time; None once DATA got 354."""
    if code != 250:
        return refused(smtp, code, message, Stage.MAIL, drop)
    progress.stage = Stage.RCPT
    code, message = step(smtp, lambda: smtp.rcpt(target.address))
    if code not in (250, 251):
        return refused(smtp, code, message, Stage.RCPT, drop)
    progress.stage = Stage.DATA
    code, message = step(smtp, lambda: smtp.docmd("data"))
    if code != 354:
        return refused(smtp, code, message, Stage.DATA, drop)
    return None


def pipelined_envelope(
    smtp: smtplib.SMTP, code: int, message: bytes, progress: Progress, drop: Callable[[], None]
) -> SmtpReply | None:
    """Given MAIL's reply, the replies to the RCPT and DATA already written after it,
    in order (RFC 2920); None once DATA got 354. A refusal is reported at the stage
    that refused, and the replies still due are read before the reset."""
    if code != 250:
        return refused_pipelined(smtp, code, message, Stage.MAIL, drop, pending=2)
    progress.stage = Stage.RCPT
    code, message = step(smtp, smtp.getreply)
    if code not in (250, 251):
        return refused_pipelined(smtp, code, message, Stage.RCPT, drop, pending=1)
    progress.stage = Stage.DATA
    code, message = step(smtp, smtp.getreply)
    if code != 354:
        return refused(smtp, code, message, Stage.DATA, drop)
    return None


def refused_pipelined(
    smtp: smtplib.SMTP,
    code: int,
    message: bytes,
    stage: Stage,
    drop: Callable[[], None],
    *,
    pending: int,
) -> SmtpReply:
    """A MAIL or RCPT refusal with `pending` replies of the pipelined commands still
    to come (the last one DATA's). Those are consequences (503 "need RCPT", "no
    valid recipients"), not the outcome: read and discarded. A server that answers
    DATA with 354 anyway gets a lone dot, ending empty data; the body never goes.
    Then the transaction is reset as for any refusal."""
    if code != 421 and readable(code) and discard_replies(smtp, pending):
        return refused(smtp, code, message, stage, drop)
    # The server is closing the channel or is out of step; the refusal is the
    # outcome whatever became of the connection after it.
    drop()
    return SmtpReply.parse(code, message, stage)


def refused(
    smtp: smtplib.SMTP, code: int, message: bytes, stage: Stage, drop: Callable[[], None]
) -> SmtpReply:
    """A MAIL/RCPT/DATA refusal: reset the transaction so the connection stays usable."""
    reply = SmtpReply.parse(code, message, stage)
    if code == 421 or not readable(code):
        drop()  # the server is closing the channel, or is out of step
        return reply
    try:
        rset_code, _ = smtp.rset()
    except (smtplib.SMTPException, OSError):
        rset_code = 0
    if rset_code != 250:
        drop()
    return reply
