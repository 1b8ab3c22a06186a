"""The envelope on the wire: MAIL FROM alone, or, where the server offers PIPELINING
(RFC 2920), MAIL FROM, RCPT TO and DATA in one write with their replies read in order; and
what is read back after a pipelined refusal. The pool (rotator/transport.py) decides what a
reply means for the connection."""

from __future__ import annotations

import re
import smtplib

from rotator.envelope import WireAddress
from rotator.session import Failed, step

__all__ = ["begin", "discard_replies", "quote_address", "readable"]


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
    smtp: smtplib.SMTP, sender: WireAddress, target: WireAddress, data: bytes
) -> tuple[bool, int, bytes]:
    """MAIL FROM, and with PIPELINING offered (RFC 2920) RCPT TO and DATA in the same
    write; returns (pipelined, MAIL's code, MAIL's text). Network failures raise Failed."""
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
