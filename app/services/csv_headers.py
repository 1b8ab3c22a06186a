"""Which column of an import holds the email address, and the template field names of the
others: the header names that contact tools write, ranked so that the primary address wins
("E-mail 1 - Value" over "E-mail 2 - Value", "Email" over "Secondary Email"), and an explicit
`email_column` for everything else."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from app.errors import InvalidInput

MAX_COLUMNS: Final = 500

# Normalised header names (letters and digits only) that name the email column.
EMAIL_HEADERS: Final = frozenset(
    {"email", "emailaddress", "mail", "mailaddress", "emailadresse", "emailadres", "correo"}
)
# The same, for CSV headers, accents dropped: what the tools people keep contacts in write
# (Google Contacts "E-mail 1 - Value", Outlook "E-mail Address", HubSpot and Apollo "Email",
# Mailchimp and LinkedIn "Email Address") and the usual names in other languages.
PRIMARY_EMAIL_HEADERS: Final = EMAIL_HEADERS | {
    "emails", "emailaddresses", "primaryemail", "primaryemailaddress", "emailid",
    "emailadresa", "adresseemail", "adressemail", "adressecourriel", "courriel",
    "adresseelectronique", "correoelectronico", "direcciondecorreo",
    "direcciondecorreoelectronico", "enderecodeemail", "indirizzoemail", "epost",
    "epostadresse", "epostadress", "sahkoposti", "sahkopostiosoite", "emailcim",
    "adresemail", "elektronnayapochta", "электроннаяпочта", "почта", "メールアドレス",
    "電子メール", "电子邮件", "邮箱", "이메일",
}  # fmt: skip
# "Secondary Email", "Work Email" ...: an address, but not the one to prefer. Lower wins.
QUALIFIED_EMAIL_RANKS: Final = {
    "secondary": 2, "tertiary": 3, "other": 4, "alternate": 4, "alternative": 4,
    "additional": 4, "backup": 4, "work": 5, "business": 5, "personal": 5, "private": 5,
    "home": 5,
}  # fmt: skip
_NUMBERED_EMAIL = re.compile(r"(?:e?mail|emailaddress)(\d{1,2})(?:value|address|adresse)?")
_EMAIL_WORDS = ("email", "emailaddress", "mail", "mailaddress")
MAX_PREAMBLE_ROWS: Final = 5
MAX_SHOWN_COLUMNS: Final = 30

# Jinja keywords and constants cannot be used as variable names in a template.
JINJA_RESERVED: Final = frozenset(
    {"and", "or", "not", "in", "is", "if", "else", "true", "false", "none"}
)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD = re.compile(r"\W+")


@dataclass(frozen=True)
class Header:
    names: list[str]  # a field name per column (the email column's too)
    email_index: int
    header_row: int

    @property
    def field_names(self) -> list[str]:
        return [n for i, n in enumerate(self.names) if i != self.email_index]


def field_name(header: str, position: int) -> str:
    """A header as a Jinja-usable snake_case name: "First Name" and "firstName" -> first_name.

    Letters keep their accents ("Prénom" -> prénom); a name with nothing usable left
    becomes column_<position>."""
    text = unicodedata.normalize("NFKC", header).strip()
    text = _CAMEL.sub("_", text).casefold()
    name = _NON_WORD.sub("_", text).strip("_")
    if not name:
        return f"column_{position}"
    if name[0].isdigit():
        name = f"field_{name}"
    if name in JINJA_RESERVED:
        name = f"{name}_"
    return name


def is_email_header(name: str) -> bool:
    """The email key of a JSON recipient (a field name): the documented names only."""
    return re.sub(r"[\W_]", "", name) in EMAIL_HEADERS


def email_rank(header: str) -> int | None:
    """How surely a CSV header names THE email column: 0 for the primary names ("Email",
    "E-mail 1 - Value", "Courriel"), higher for second choices ("E-mail 2 Address" is 2,
    "Secondary Email" 2, "Work Email" 5), None for anything else ("E-mail Type")."""
    text = unicodedata.normalize("NFKD", header).casefold()
    key = "".join(c for c in text if c.isalnum() and not unicodedata.combining(c))
    if key in PRIMARY_EMAIL_HEADERS:
        return 0
    numbered = _NUMBERED_EMAIL.fullmatch(key)
    if numbered:
        return max(int(numbered.group(1)) - 1, 0) * 2
    for qualifier, rank in QUALIFIED_EMAIL_RANKS.items():
        if key.startswith(qualifier) and key[len(qualifier) :] in _EMAIL_WORDS:
            return rank
    return None


def same_header(a: str, b: str) -> bool:
    """email_column matching: case-insensitive, after trimming."""
    return unicodedata.normalize("NFKC", a).strip().casefold() == (
        unicodedata.normalize("NFKC", b).strip().casefold()
    )


def _shown(cells: list[str]) -> str:
    shown = ", ".join(repr(c) for c in cells[:MAX_SHOWN_COLUMNS]) or "nothing"
    if len(cells) > MAX_SHOWN_COLUMNS:
        shown += f" and {len(cells) - MAX_SHOWN_COLUMNS} more"
    return shown


_CHOOSE = "choose it with the email_column form field (API) or --email-column NAME (CLI)"


def _email_index(cells: list[str], email_column: str | None) -> int:
    if email_column is not None:
        for i, cell in enumerate(cells):
            if same_header(cell, email_column):
                return i
        raise InvalidInput(
            f"email_column {email_column!r} is not a column of the file "
            f"(the header row has {_shown(cells)})",
            field="email_column",
        )
    ranked = [(rank, i) for i, c in enumerate(cells) if (rank := email_rank(c)) is not None]
    if not ranked:
        hint = ""
        if any("@" in c for c in cells):
            hint = " The first row looks like data: the file needs a header row."
        raise InvalidInput(
            f"the file has no email column (the header row has {_shown(cells)}); name it "
            f"Email or {_CHOOSE}.{hint}",
            field="file",
        )
    best = min(rank for rank, _ in ranked)
    tied = [i for rank, i in ranked if rank == best]
    if len(tied) > 1:
        found = ", ".join(repr(cells[i]) for i in tied)
        raise InvalidInput(
            f"more than one email column ({found}); keep one of them or {_CHOOSE}",
            field="file",
        )
    return tied[0]


def has_email_column(cells: list[str], email_column: str | None) -> bool:
    if email_column is not None:
        return any(same_header(c, email_column) for c in cells)
    return any(email_rank(c) is not None for c in cells)


def header_for(cells: list[str], header_row: int, email_column: str | None = None) -> Header:
    """Names for a header row; InvalidInput (field "file", or "email_column" for an
    email_column the header does not have) when it cannot be used."""
    if len(cells) > MAX_COLUMNS:
        raise InvalidInput(
            f"the file has {len(cells)} columns; at most {MAX_COLUMNS} are supported",
            field="file",
        )
    names = [field_name(cell, i) for i, cell in enumerate(cells, 1)]
    seen: dict[str, str] = {}
    for cell, name in zip(cells, names, strict=True):
        if name in seen:
            raise InvalidInput(
                f"columns {seen[name]!r} and {cell!r} both become the field {name!r}; "
                "rename one of them",
                field="file",
            )
        seen[name] = cell
    return Header(names, _email_index(cells, email_column), header_row)
