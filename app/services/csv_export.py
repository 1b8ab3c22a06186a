"""CSV written for people to open in a spreadsheet: a cell that a spreadsheet would run
as a formula (=, +, -, @, or a tab / carriage return before one) is prefixed with a single
quote, so it shows as text (OWASP "CSV Injection")."""

from __future__ import annotations

from typing import Final

FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: object) -> str:
    text = "" if cell is None else str(cell)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text
