"""Field types and schemas shared by the resources: strict scalars (JSON `"5"` is not an
integer, `1` is not a boolean), strings PostgreSQL can store, opaque keyset cursors."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

INT4_MAX = 2**31 - 1
EMAIL_MAX = 254  # RFC 5321's path limit (256 with the brackets); the importer's too
BIGINT_MAX = 2**63 - 1
PAGE_LIMIT_DEFAULT = 100
PAGE_LIMIT_MAX = 1000


class Text(fields.String):
    """A string PostgreSQL can store: no NUL, no lone surrogates. `single_line` also refuses
    CR and LF, for anything that may end up in a header (subject, From name)."""

    def __init__(self, *, single_line: bool = False, strip: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.single_line = single_line
        self.strip = strip

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        check_storable(text)
        if self.single_line and ("\r" in text or "\n" in text):
            raise ma.ValidationError("must be a single line: CR and LF are not allowed")
        return text.strip() if self.strip else text


def check_storable(text: str) -> None:
    if "\x00" in text:
        raise ma.ValidationError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ma.ValidationError("must be valid Unicode text") from None


class EmailAddress(Text):
    """An e-mail address, trimmed; the domain is lower-cased (the local part is the
    mailbox owner's business)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", [validate.Length(max=EMAIL_MAX), validate.Email()])
        kwargs["metadata"] = {"format": "email", **kwargs.get("metadata", {})}
        super().__init__(single_line=True, strip=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        address: str = super()._deserialize(value, attr, data, **kwargs)
        local, at, domain = address.rpartition("@")
        return f"{local}{at}{domain.lower()}" if at else address


class StrictInteger(fields.Integer):
    """Only JSON numbers without a fraction; booleans are not integers here."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _validated(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


class StrictBoolean(fields.Boolean):
    """Only JSON true and false."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


# PostgreSQL's timestamptz takes UTC offsets up to 15:59 either way (real ones are within
# -12:00 .. +14:00); a wider one used to reach the database and fail there as a 500.
MAX_UTC_OFFSET = timedelta(hours=15, minutes=59)
DATE_TIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
    r"(Z|z|[+-](0\d|1[0-5]):[0-5]\d)?$"
)
_DATE_TIME = re.compile(DATE_TIME_PATTERN)


class BoundedDateTime(fields.AwareDateTime):
    """An ISO 8601 date-time the database can store, loaded as UTC. An offset beyond
    +-15:59 is refused; a value without an offset is taken as UTC. `future` requires a
    moment after now; `max_ahead` bounds how far ahead it may be."""

    def __init__(
        self, *, future: bool = False, max_ahead: timedelta | None = None, **kwargs: Any
    ) -> None:
        bounds = "; taken as UTC when it has no offset; UTC offsets within +-15:59"
        if future:
            bounds += "; must be in the future"
        if max_ahead is not None:
            bounds += f"; at most {max_ahead.days} days ahead"
        metadata = dict(kwargs.pop("metadata", {}))
        metadata["description"] = (metadata.get("description", "") + bounds).lstrip("; ")
        metadata.setdefault("pattern", DATE_TIME_PATTERN)
        super().__init__(default_timezone=UTC, metadata=metadata, **kwargs)
        self.future = future
        self.max_ahead = max_ahead

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
            raise ma.ValidationError(
                "must be an ISO 8601 date-time like 2030-01-31T09:00:00Z "
                "(offset optional, within +-15:59)"
            )
        moment: datetime = super()._deserialize(value, attr, data, **kwargs)
        offset = moment.utcoffset() or timedelta(0)
        if abs(offset) > MAX_UTC_OFFSET:
            raise ma.ValidationError("the UTC offset must be within -15:59 and +15:59")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ma.ValidationError("is out of range") from None
        now = datetime.now(UTC)
        if self.future and moment <= now:
            raise ma.ValidationError("must be in the future")
        if self.max_ahead is not None and moment > now + self.max_ahead:
            raise ma.ValidationError(f"must be at most {self.max_ahead.days} days ahead")
        return moment


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.isdigit() or len(raw) > 19 or int(raw) > BIGINT_MAX:
        raise ma.ValidationError("not a valid cursor: pass next_cursor from the previous page")
    return int(raw)


class Cursor(fields.String):
    """An opaque keyset cursor: the last id of the previous page, base64-encoded."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return decode_cursor(super()._deserialize(value, attr, data, **kwargs))

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else encode_cursor(int(value))


class PageQuerySchema(ma.Schema):
    cursor = Cursor(
        metadata={"description": "next_cursor of the previous page; omit for the first page"}
    )
    limit = fields.Integer(  # a query string: "50" is the number 50 here
        load_default=PAGE_LIMIT_DEFAULT,
        validate=validate.Range(1, PAGE_LIMIT_MAX),
        metadata={"description": f"page size, at most {PAGE_LIMIT_MAX}"},
    )


class PageSchema(ma.Schema):
    next_cursor = Cursor(
        required=True,
        allow_none=True,
        metadata={"description": "pass as ?cursor= for the next page; null on the last page"},
    )


def dedupe(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def storable_json_scalar(value: Any) -> str | None:
    """None when `value` is a JSON scalar PostgreSQL's JSONB can hold, else the reason."""
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(value, str):
        try:
            check_storable(value)
        except ma.ValidationError as exc:
            return str(exc.messages[0]) if isinstance(exc.messages, list) else str(exc)
        return None
    if isinstance(value, Mapping):
        return "must be a string, number, boolean or null, not an object"
    return "must be a string, number, boolean or null, not a list"
